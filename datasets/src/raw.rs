//! Borrowed JSON decoding of one record.
//!
//! Hand-written visitors rather than `serde_json::Value` or derived structs: strings borrow from the
//! line buffer when they have no escapes, unknown keys are skipped without allocating, and a value of
//! the wrong type is recorded (not failed on) so the error can name the field and the type found.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A field's value as far as validation cares.
#[derive(Debug)]
pub(crate) enum Field<'a> {
    Text(Cow<'a, str>),
    Null,
    /// Any other JSON type, named for error messages ("a number").
    Other(&'static str),
}

/// The top-level JSON value of a record.
#[derive(Debug)]
pub(crate) enum Top<'a> {
    Object(Box<RawRecord<'a>>),
    Other(&'static str),
}

/// The fields of every known shape; the shape is decided afterwards from which are present.
#[derive(Debug, Default)]
pub(crate) struct RawRecord<'a> {
    pub(crate) question: Option<Field<'a>>,
    pub(crate) answer: Option<Field<'a>>,
    pub(crate) prompt: Option<Field<'a>>,
    pub(crate) response: Option<Field<'a>>,
    /// OpenAI's legacy fine-tuning format: `prompt`/`completion`.
    pub(crate) completion: Option<Field<'a>>,
    pub(crate) instruction: Option<Field<'a>>,
    pub(crate) input: Option<Field<'a>>,
    pub(crate) output: Option<Field<'a>>,
    pub(crate) messages: Option<MessagesField<'a>>,
    /// The first known key that appeared twice.
    pub(crate) duplicate: Option<&'static str>,
}

#[derive(Debug)]
pub(crate) enum MessagesField<'a> {
    List(Vec<MessageField<'a>>),
    Null,
    Other(&'static str),
}

#[derive(Debug)]
pub(crate) enum MessageField<'a> {
    Object { role: Option<Field<'a>>, content: Option<Field<'a>>, duplicate: Option<&'static str> },
    Other(&'static str),
}

/// Values a visitor turns a JSON type it does not want into.
trait Rejected {
    fn other(kind: &'static str) -> Self;
}

/// Visitor methods for the JSON types a visitor does not want: each becomes `Rejected::other`,
/// draining arrays and objects so parsing continues after them.
macro_rules! reject {
    (scalars) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Rejected::other("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Rejected::other("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Rejected::other("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Rejected::other("a number"))
        }
    };
    (str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Rejected::other("a string"))
        }
    };
    (null) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Rejected::other("null"))
        }
    };
    (seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Rejected::other("an array"))
        }
    };
    (map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Rejected::other("an object"))
        }
    };
}

impl Rejected for Field<'_> {
    fn other(kind: &'static str) -> Self {
        Field::Other(kind)
    }
}
impl Rejected for Top<'_> {
    fn other(kind: &'static str) -> Self {
        Top::Other(kind)
    }
}
impl Rejected for MessagesField<'_> {
    fn other(kind: &'static str) -> Self {
        MessagesField::Other(kind)
    }
}
impl Rejected for MessageField<'_> {
    fn other(kind: &'static str) -> Self {
        MessageField::Other(kind)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            reject!(scalars);
            reject!(seq);
            reject!(map);
        }
        d.deserialize_any(V)
    }
}

/// Sets a field once, remembering the key if it was already set.
fn set<T>(slot: &mut Option<T>, value: T, name: &'static str, duplicate: &mut Option<&'static str>) {
    if slot.is_some() && duplicate.is_none() {
        *duplicate = Some(name);
    }
    *slot = Some(value);
}

/// A key, matched without allocating; unknown keys are `None`.
struct Key(Option<&'static str>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                const KNOWN: &[&str] = &[
                    "question",
                    "answer",
                    "prompt",
                    "response",
                    "completion",
                    "instruction",
                    "input",
                    "output",
                    "messages",
                    "role",
                    "content",
                ];
                Ok(Key(KNOWN.iter().find(|k| **k == v).copied()))
            }
        }
        d.deserialize_identifier(V)
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut r = RawRecord::default();
                let dup = &mut r.duplicate;
                while let Some(Key(key)) = map.next_key()? {
                    match key {
                        Some(k @ "question") => set(&mut r.question, map.next_value()?, k, dup),
                        Some(k @ "answer") => set(&mut r.answer, map.next_value()?, k, dup),
                        Some(k @ "prompt") => set(&mut r.prompt, map.next_value()?, k, dup),
                        Some(k @ "response") => set(&mut r.response, map.next_value()?, k, dup),
                        Some(k @ "completion") => set(&mut r.completion, map.next_value()?, k, dup),
                        Some(k @ "instruction") => set(&mut r.instruction, map.next_value()?, k, dup),
                        Some(k @ "input") => set(&mut r.input, map.next_value()?, k, dup),
                        Some(k @ "output") => set(&mut r.output, map.next_value()?, k, dup),
                        Some(k @ "messages") => set(&mut r.messages, map.next_value()?, k, dup),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Top::Object(Box::new(r)))
            }
            reject!(scalars);
            reject!(str);
            reject!(null);
            reject!(seq);
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for MessagesField<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MessagesField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
                while let Some(m) = seq.next_element()? {
                    list.push(m);
                }
                Ok(MessagesField::List(list))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MessagesField::Null)
            }
            reject!(scalars);
            reject!(str);
            reject!(map);
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for MessageField<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MessageField<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut role, mut content, mut duplicate) = (None, None, None);
                while let Some(Key(key)) = map.next_key()? {
                    match key {
                        Some(k @ "role") => set(&mut role, map.next_value()?, k, &mut duplicate),
                        Some(k @ "content") => set(&mut content, map.next_value()?, k, &mut duplicate),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(MessageField::Object { role, content, duplicate })
            }
            reject!(scalars);
            reject!(str);
            reject!(null);
            reject!(seq);
        }
        d.deserialize_any(V)
    }
}
