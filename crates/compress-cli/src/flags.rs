//! Library errors speak config fields (`group_size`, the recipe keys); on the command line the
//! same settings are flags (`--group-size`). This maps one to the other in error messages.

use compress_core::CoreError;

/// The flag of config field `field`: `--` and the name with dashes (`distill_T` → `--distill-T`).
pub fn flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

/// Fields quoted in a message as `` `field` `` become their flags.
fn flags_in(msg: &str) -> String {
    msg.split('`')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 if !part.is_empty() && !part.contains(' ') => flag(part),
            1 => format!("`{part}`"),
            _ => part.to_string(),
        })
        .collect()
}

/// One cause of an error chain as the CLI prints it: a setting's field as its flag.
pub fn message(cause: &(dyn std::error::Error + 'static)) -> String {
    match cause.downcast_ref::<CoreError>() {
        Some(CoreError::Setting { field, value, msg }) => {
            let value = match value.is_empty() {
                true => String::new(),
                false => format!(" {value}"),
            };
            format!("{}{value}: {}", flag(field), flags_in(msg))
        }
        _ => cause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_flags() {
        let e = CoreError::setting("group_size", 0, "must be > 0 with `method` gptq");
        assert_eq!(
            message(&e),
            "--group-size 0: must be > 0 with --method gptq"
        );
        let e = CoreError::missing("distill_T", "see `a b`");
        assert_eq!(message(&e), "--distill-T: see `a b`");
        assert_eq!(e.to_string(), "distill_T: see `a b`");
    }
}
