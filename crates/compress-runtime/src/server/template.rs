//! Chat templates: the Jinja template a Hugging Face model dir ships for turning a list of
//! messages into one prompt, rendered with minijinja the way transformers renders it
//! (`trim_blocks`, `lstrip_blocks`, loop controls, Python string methods, `raise_exception`,
//! `strftime_now`, the `bos_token`/`eos_token` strings, `add_generation_prompt`).
//!
//! Where the template comes from, first found wins: an explicit file (`--chat-template`),
//! `chat_template.jinja` in the model dir, the `chat_template` key of `tokenizer_config.json`
//! (a string, or a list of `{name, template}` of which `default` is used).

use std::path::Path;

use minijinja::{Environment, Error, ErrorKind};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Result, RuntimeError};

/// A compiled chat template with the special-token strings it may use.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// One message as templates see it: a role and its text.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The message text.
    pub content: String,
}

fn invalid(path: &Path, msg: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Invalid(format!("{}: {msg}", path.display()))
}

/// A token entry of tokenizer_config.json: a string or an `{"content": …}` object.
fn token_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// The template of `model_dir` (or of `explicit`, when given); `None` when the model has
    /// none. Errors name the file that could not be read or compiled.
    pub fn load(model_dir: &Path, explicit: Option<&Path>) -> Result<Option<Self>> {
        let config_path = model_dir.join("tokenizer_config.json");
        let config: Value = match config_path.is_file() {
            true => {
                let text =
                    std::fs::read_to_string(&config_path).map_err(|e| invalid(&config_path, e))?;
                serde_json::from_str(&text).map_err(|e| invalid(&config_path, e))?
            }
            false => Value::Null,
        };
        let jinja_path = model_dir.join("chat_template.jinja");
        let (source, origin) = if let Some(p) = explicit {
            let s = std::fs::read_to_string(p).map_err(|e| invalid(p, e))?;
            (s, p.to_path_buf())
        } else if jinja_path.is_file() {
            let s = std::fs::read_to_string(&jinja_path).map_err(|e| invalid(&jinja_path, e))?;
            (s, jinja_path)
        } else {
            match config.get("chat_template") {
                Some(Value::String(s)) => (s.clone(), config_path.clone()),
                Some(Value::Array(list)) => {
                    let default = list.iter().find(|t| t["name"] == "default");
                    match default.and_then(|t| t["template"].as_str()) {
                        Some(s) => (s.to_string(), config_path.clone()),
                        None => {
                            return Err(invalid(
                                &config_path,
                                "chat_template: a list without a `default` template",
                            ))
                        }
                    }
                }
                Some(Value::Null) | None => return Ok(None),
                Some(other) => {
                    return Err(invalid(
                        &config_path,
                        format!("chat_template: expected a string or a list, got {other}"),
                    ))
                }
            }
        };
        Self::new(
            source,
            token_string(config.get("bos_token")),
            token_string(config.get("eos_token")),
        )
        .map(Some)
        .map_err(|e| invalid(&origin, e))
    }

    /// Compiles `source` with the given special-token strings.
    pub fn new(source: String, bos_token: String, eos_token: String) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
        env.add_template_owned("chat", source)
            .map_err(|e| RuntimeError::Invalid(format!("chat template: {e}")))?;
        Ok(Self {
            env,
            bos_token,
            eos_token,
        })
    }

    /// The prompt for `messages`, ending with the assistant's turn opener when
    /// `add_generation_prompt`. A template that raises (an unsupported role, …) gives its message.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| RuntimeError::Invalid(format!("chat template: {e}")))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| {
            let detail = e
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string());
            RuntimeError::Invalid(format!("chat template: {detail}"))
        })
    }
}

/// `strftime_now(fmt)` of Llama 3 templates: the current UTC date and time, with the
/// `%d %m %Y %y %b %B %H %M %S %%` conversions.
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs, fmt)
}

/// `fmt` for the UTC time `secs` after the Unix epoch.
fn format_utc(secs: u64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    // Days to a civil date (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out += &format!("{day:02}"),
            Some('m') => out += &format!("{month:02}"),
            Some('Y') => out += &year.to_string(),
            Some('y') => out += &format!("{:02}", year % 100),
            Some('b') => out += &name[..3],
            Some('B') => out += name,
            Some('H') => out += &format!("{h:02}"),
            Some('M') => out += &format!("{m:02}"),
            Some('S') => out += &format!("{s:02}"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A ChatML template in the form HF model dirs ship it (Qwen2's, without tools).
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_renders_as_transformers_does() {
        let t = ChatTemplate::new(CHATML.into(), String::new(), String::new()).unwrap();
        let out = t.render(&[msg("user", "Hi")], true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn blocks_are_trimmed_python_methods_work_and_raise_exception_reports() {
        let src = "{{ bos_token }}\n{% for m in messages %}\n  {% if m.role not in ['user', 'assistant'] %}{{ raise_exception('role ' + m.role + ' is not supported') }}{% endif %}\n[{{ m.role.upper() }}] {{ m.content.strip() }}{{ eos_token }}\n{% endfor %}";
        let t = ChatTemplate::new(src.into(), "<s>".into(), "</s>".into()).unwrap();
        let out = t
            .render(&[msg("user", "  a "), msg("assistant", "b")], false)
            .unwrap();
        // What jinja2 with transformers' settings renders (checked once against it).
        assert_eq!(out, "<s>\n[USER] a</s>\n[ASSISTANT] b</s>\n");
        let err = t.render(&[msg("tool", "x")], false).unwrap_err();
        assert!(
            err.to_string().contains("role tool is not supported"),
            "{err}"
        );
    }

    #[test]
    fn dates_format_like_strftime() {
        // 2024-07-23 14:05:09 UTC.
        assert_eq!(
            format_utc(1_721_743_509, "%d %b %Y %H:%M:%S %B %m %y %%"),
            "23 Jul 2024 14:05:09 July 07 24 %"
        );
        assert_eq!(format_utc(951_782_400, "%Y-%m-%d"), "2000-02-29");
    }

    #[test]
    fn load_finds_the_template_or_none() {
        let dir = std::env::temp_dir().join(format!("compress-tmpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(ChatTemplate::load(&dir, None).unwrap().is_none());
        let cfg = serde_json::json!({
            "bos_token": {"content": "<s>"}, "eos_token": "</s>",
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}]
        });
        std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let t = ChatTemplate::load(&dir, None).unwrap().unwrap();
        assert_eq!(t.render(&[msg("user", "x")], true).unwrap(), "<s>x</s>");
        std::fs::write(dir.join("chat_template.jinja"), "J{{ messages|length }}").unwrap();
        let t = ChatTemplate::load(&dir, None).unwrap().unwrap();
        assert_eq!(t.render(&[msg("user", "x")], true).unwrap(), "J1");
        std::fs::write(dir.join("bad.jinja"), "{% for %}").unwrap();
        let err = ChatTemplate::load(&dir, Some(&dir.join("bad.jinja")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("bad.jinja"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
