//! Run-time device selection: `--device cpu|flex|tch|tch:cpu|cuda|cuda:N`.
//!
//! `cpu` and `flex` are burn's pure-Rust flex backend (always compiled in). `tch`/`tch:cpu`
//! is libtorch on the CPU and `cuda[:N]` libtorch on GPU N; both need the `tch` cargo feature,
//! and CUDA also needs a visible GPU. Asking for what is not there is a clear error.

use burn::tensor::Device;

use crate::error::{CoreError, Result};

/// Parses a device name into a burn device (without autodiff).
pub fn parse_device(name: &str) -> Result<Device> {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "cpu" | "flex" => Ok(Device::flex()),
        "tch" | "tch:cpu" | "libtorch" => tch_cpu(),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let index = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n.parse::<usize>().map_err(|_| {
                    CoreError::Device(format!("`{name}`: expected cuda:N with N a GPU index"))
                })?,
            };
            tch_cuda(index)
        }
        _ => Err(CoreError::Device(format!(
            "unknown device `{name}` (expected cpu, flex, tch:cpu or cuda:N)"
        ))),
    }
}

/// A short human name of the backend behind a device, for logs and JSON output.
pub fn backend_name(device: &Device) -> String {
    let debug = format!("{device:?}");
    if debug.contains("LibTorch") {
        "tch".to_string()
    } else if debug.contains("Flex") {
        "flex".to_string()
    } else {
        debug
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)]
fn tch_cpu() -> Result<Device> {
    Ok(Device::libtorch())
}

#[cfg(not(feature = "tch"))]
fn tch_cpu() -> Result<Device> {
    Err(CoreError::Device(
        "libtorch was asked for but this build has no `tch` feature (rebuild with --features tch)"
            .to_string(),
    ))
}

#[cfg(feature = "tch")]
#[allow(deprecated)]
fn tch_cuda(index: usize) -> Result<Device> {
    let count = tch::Cuda::device_count();
    if count <= 0 {
        return Err(CoreError::Device(format!(
            "cuda:{index} was asked for but libtorch sees no CUDA GPU"
        )));
    }
    if index as i64 >= count {
        return Err(CoreError::Device(format!(
            "cuda:{index} was asked for but only {count} CUDA GPU(s) are visible"
        )));
    }
    Ok(Device::libtorch_cuda(index))
}

#[cfg(not(feature = "tch"))]
fn tch_cuda(index: usize) -> Result<Device> {
    Err(CoreError::Device(format!(
        "cuda:{index} needs the `tch` feature (rebuild with --features tch, against PyPI torch)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_flex() {
        let device = parse_device("cpu").unwrap();
        assert_eq!(backend_name(&device), "flex");
    }

    #[test]
    fn unknown_device_is_an_error() {
        let err = parse_device("tpu:0").unwrap_err().to_string();
        assert!(err.contains("unknown device `tpu:0`"), "{err}");
        let err = parse_device("cuda:x").unwrap_err().to_string();
        assert!(err.contains("cuda:N"), "{err}");
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn cuda_without_feature_is_an_error() {
        let err = parse_device("cuda:0").unwrap_err().to_string();
        assert!(err.contains("tch"), "{err}");
    }
}
