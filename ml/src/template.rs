//! Chat templates: the Jinja `chat_template` of `tokenizer_config.json`, rendered with minijinja the way
//! transformers' `apply_chat_template` renders it (trim_blocks, lstrip_blocks, Python string methods,
//! `raise_exception`, `bos_token` / `eos_token` in scope).
//!
//! Fallback: a model folder without a chat template gets ChatML ([`CHATML_TEMPLATE`]), the format of the
//! tiny models this project creates and of SmolLM2 and Qwen2:
//! `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n` when a
//! generation prompt is asked for.

use std::path::Path;

use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{MlError, Result};
use crate::tokenizer::{optional_json, token_content};

/// The template used when a model folder has none.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    /// A message from a role and its text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A compiled chat template with the special tokens it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    /// Whether the template came from the model folder (false: the ChatML fallback).
    pub from_model: bool,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// The template of a model folder's `tokenizer_config.json` (a string, or a list of named templates of
    /// which `default` is taken), or ChatML when there is none.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = optional_json(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let special = |k: &str| config.get(k).and_then(token_content).unwrap_or_default();
        let (bos, eos) = (special("bos_token"), special("eos_token"));
        match config.get("chat_template").and_then(template_source) {
            Some(source) => Self::new(source, bos, eos, true),
            None => Self::new(CHATML_TEMPLATE.to_string(), bos, eos, false),
        }
    }

    /// The ChatML fallback.
    pub fn chatml() -> Self {
        Self::new(CHATML_TEMPLATE.to_string(), String::new(), String::new(), false)
            .expect("the built-in template compiles")
    }

    /// Compiles a template source.
    pub fn new(source: String, bos_token: String, eos_token: String, from_model: bool) -> Result<Self> {
        let mut env = Environment::new();
        // transformers renders with trim_blocks and lstrip_blocks; templates are written for that.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.clone()).map_err(|e| MlError::Template(e.to_string()))?;
        Ok(ChatTemplate { env, source, from_model, bos_token, eos_token })
    }

    /// The template's Jinja source (the ONNX export copies it).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation; `add_generation_prompt` appends the opening of the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(|e| MlError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| MlError::Template(e.to_string()))
    }

    /// Renders a single user prompt, with an optional system message, ready for generation.
    pub fn render_prompt(&self, system: Option<&str>, user: &str) -> Result<String> {
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = system {
            messages.push(ChatMessage::new("system", s));
        }
        messages.push(ChatMessage::new("user", user));
        self.render(&messages, true)
    }
}

fn template_source(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_owned)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_fallback_renders_turns_and_the_generation_prompt() {
        let t = ChatTemplate::chatml();
        let text = t.render_prompt(Some("Be brief."), "Hi").unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_string_methods_and_raise_exception_work() {
        let src = "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}{{ bos_token }}[{{ m.content.strip() }}]{% endfor %}";
        let t = ChatTemplate::new(src.into(), "<s>".into(), "</s>".into(), true).unwrap();
        assert_eq!(t.render(&[ChatMessage::new("user", "  x ")], false).unwrap(), "<s>[x]");
        let err = t.render(&[ChatMessage::new("tool", "x")], false).unwrap_err();
        assert!(err.to_string().contains("bad role"), "{err}");
    }

    #[test]
    fn a_folder_without_a_template_gets_chatml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), r#"{"eos_token": {"content": "</s>"}}"#).unwrap();
        let t = ChatTemplate::load(dir.path()).unwrap();
        assert!(!t.from_model);
        assert_eq!(t.eos_token, "</s>");
    }
}
