//! A tokenizer's special tokens and framing, taken from what the tokenizer declares.
//!
//! Each role (cls, sep, pad, mask, unk, bos, eos) is looked up in this order, the first hit wins:
//! 1. `<role>_token` in a `tokenizer_config.json`, then in a `special_tokens_map.json`, beside the
//!    tokenizer file (a string, or an AddedToken dict's "content") — the names transformers uses;
//! 2. the tokenizer.json: cls and sep are the first and last special tokens its post-processor
//!    puts around a sequence, pad its padding's `pad_token`, unk its model's unknown token;
//! 3. the usual names in the vocabulary (`[CLS]`/`<s>`, `[SEP]`/`</s>`, `[PAD]`/`<pad>`,
//!    `[MASK]`/`<mask>`, `[UNK]`/`<unk>`; none for bos/eos).
//!
//! Framing (the special ids put before and after every document) is the post-processor's
//! single-sequence template, as the `tokenizers` crate itself applies it — TemplateProcessing,
//! RobertaProcessing, BertProcessing and Sequences of them, prefix-only and suffix-only templates
//! included. A tokenizer whose post-processor adds nothing (or that has none) is framed
//! `cls … sep`. pad and mask are required; unk is optional (a byte-level BPE has none).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::{Encoding, Token};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Cls,
    Sep,
    Pad,
    Mask,
    Unk,
    Bos,
    Eos,
}

impl Role {
    pub const ALL: [Role; 7] = [Role::Cls, Role::Sep, Role::Pad, Role::Mask, Role::Unk, Role::Bos, Role::Eos];

    /// "cls", "sep", …: the role's name (`<name>_token` in a tokenizer_config.json).
    pub fn name(self) -> &'static str {
        match self {
            Role::Cls => "cls",
            Role::Sep => "sep",
            Role::Pad => "pad",
            Role::Mask => "mask",
            Role::Unk => "unk",
            Role::Bos => "bos",
            Role::Eos => "eos",
        }
    }

    /// The last resort: names tried in the vocabulary when nothing declares the role.
    fn usual_names(self) -> &'static [&'static str] {
        match self {
            Role::Cls => &["[CLS]", "<s>"],
            Role::Sep => &["[SEP]", "</s>"],
            Role::Pad => &["[PAD]", "<pad>"],
            Role::Mask => &["[MASK]", "<mask>"],
            Role::Unk => &["[UNK]", "<unk>"],
            Role::Bos | Role::Eos => &[],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecialToken {
    pub token: String,
    pub id: u32,
}

/// Files beside a tokenizer that name its special tokens, in the order they are consulted.
pub const CONFIG_FILES: [&str; 2] = ["tokenizer_config.json", "special_tokens_map.json"];

/// A tokenizer's special tokens: the roles it declares, its framing and every special id.
#[derive(Clone, Debug)]
pub struct Specials {
    roles: [Option<SpecialToken>; 7],
    /// Special ids put before every document (`[CLS]`, `<s>`, …).
    pub prefix: Vec<u32>,
    /// Special ids put after every document (`[SEP]`, `</s>`, …); packing separates documents with them.
    pub suffix: Vec<u32>,
    /// Every id that is never a masking target nor a random replacement (sorted, unique): the
    /// roles, the framing and the tokenizer.json's special added tokens.
    pub ids: Vec<u32>,
}

impl Specials {
    pub fn get(&self, role: Role) -> Option<&SpecialToken> {
        self.roles[role as usize].as_ref()
    }

    pub fn id(&self, role: Role) -> Option<u32> {
        self.get(role).map(|t| t.id)
    }

    /// The padding id (every tokenizer the engine accepts declares one).
    pub fn pad_id(&self) -> u32 {
        self.id(Role::Pad).expect("resolve() refuses a tokenizer without a pad token")
    }

    /// The `[MASK]` id (every tokenizer the engine accepts declares one).
    pub fn mask_id(&self) -> u32 {
        self.id(Role::Mask).expect("resolve() refuses a tokenizer without a mask token")
    }

    /// The declared roles, in `Role::ALL` order.
    pub fn declared(&self) -> impl Iterator<Item = (Role, &SpecialToken)> {
        Role::ALL.into_iter().filter_map(|r| self.get(r).map(|t| (r, t)))
    }
}

/// What a tokenizer declares: the parsed tokenizer.json, the crate's tokenizer built from it
/// (truncation and padding off), its vocabulary (added tokens included) and its source file.
pub struct Declarations<'a> {
    pub source: &'a Path,
    pub json: &'a Value,
    pub hf: &'a tokenizers::Tokenizer,
    pub vocab: &'a HashMap<String, u32>,
}

/// The special tokens ids around a sequence, by the post-processor's single-sequence template:
/// None when there is no post-processor or it adds nothing.
fn template(d: &Declarations) -> Result<Option<(Vec<SpecialToken>, Vec<SpecialToken>)>> {
    if d.hf.get_post_processor().is_none() {
        return Ok(None);
    }
    // A one-token document with an id no vocabulary has: whatever the processor adds around it
    // is the framing, exactly as the library frames.
    const DOC: u32 = u32::MAX;
    let doc = Encoding::from_tokens(vec![Token::new(DOC, "a".into(), (0, 1))], 0);
    let framed = d.hf.post_process(doc, None, true).map_err(|e| {
        Error::InvalidTokenizer(format!("the post_processor of {} fails on a sequence ({e})", d.source.display()))
    })?;
    let (ids, tokens) = (framed.get_ids(), framed.get_tokens());
    let Some(at) = ids.iter().position(|&i| i == DOC) else {
        return Err(Error::InvalidTokenizer(format!(
            "the post_processor of {} drops the sequence it frames; fix its single-sequence template", d.source.display())));
    };
    if ids.len() == 1 {
        return Ok(None);
    }
    let specials = |range: std::ops::Range<usize>| -> Vec<SpecialToken> {
        range.map(|i| SpecialToken { token: tokens[i].clone(), id: ids[i] }).collect()
    };
    Ok(Some((specials(0..at), specials(at + 1..ids.len()))))
}

/// The configuration files beside the tokenizer that exist, parsed.
fn configs(source: &Path) -> Result<Vec<(PathBuf, Value)>> {
    let Some(dir) = source.parent() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for name in CONFIG_FILES {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(value) if value.is_object() => out.push((path, value)),
            Ok(_) => return Err(Error::InvalidTokenizer(format!("{} is not a JSON object; fix or remove it", path.display()))),
            Err(e) => return Err(Error::InvalidTokenizer(format!("{} is not valid JSON ({e}); fix or remove it", path.display()))),
        }
    }
    Ok(out)
}

/// `<role>_token` of a configuration file: a string or an AddedToken dict; None when absent or null.
fn configured(path: &Path, config: &Value, role: Role) -> Result<Option<String>> {
    let key = format!("{}_token", role.name());
    match config.get(&key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(Error::InvalidTokenizer(format!("{key} in {} is a dict without a \"content\" string", path.display()))),
        },
        Some(other) => Err(Error::InvalidTokenizer(format!(
            "{key} in {} must be a string or an AddedToken dict, not {other}", path.display()))),
    }
}

/// The tokenizer.json's own declaration of `role` (step 2 of the module doc), as a token.
fn in_tokenizer_json(d: &Declarations, role: Role, template: Option<&(Vec<SpecialToken>, Vec<SpecialToken>)>) -> Option<String> {
    match role {
        Role::Cls => template.and_then(|(prefix, _)| prefix.first()).map(|t| t.token.clone()),
        Role::Sep => template.and_then(|(_, suffix)| suffix.last()).map(|t| t.token.clone()),
        Role::Pad => d.json.pointer("/padding/pad_token").and_then(Value::as_str).map(str::to_owned),
        Role::Unk => {
            let model = d.json.get("model")?;
            match model.get("unk_id").and_then(Value::as_u64) {
                // Unigram names its unknown token by id.
                Some(id) => d.hf.id_to_token(id as u32),
                None => model.get("unk_token").and_then(Value::as_str).map(str::to_owned),
            }
        }
        Role::Mask | Role::Bos | Role::Eos => None,
    }
}

/// A role's token and id, or None when nothing declares it and no usual name is in the vocabulary.
fn lookup(d: &Declarations, configs: &[(PathBuf, Value)], role: Role, template: Option<&(Vec<SpecialToken>, Vec<SpecialToken>)>) -> Result<Option<SpecialToken>> {
    let found = |token: String| d.vocab.get(&token).map(|&id| SpecialToken { token, id });
    for (path, config) in configs {
        if let Some(token) = configured(path, config, role)? {
            return found(token.clone()).map(Some).ok_or_else(|| {
                Error::InvalidTokenizer(format!(
                    "{} declares {}_token {token:?}, but {} has no such token; fix the declaration or pass the tokenizer it belongs to",
                    path.display(), role.name(), d.source.display()))
            });
        }
    }
    if let Some(token) = in_tokenizer_json(d, role, template) {
        if let Some(t) = found(token) {
            return Ok(Some(t));
        }
    }
    Ok(role.usual_names().iter().find_map(|n| found(n.to_string())))
}

/// Resolve every role, the framing and the special ids; errors name what is missing and where it
/// was looked for.
pub fn resolve(d: &Declarations) -> Result<Specials> {
    let template = template(d)?;
    let configs = configs(d.source)?;
    let mut roles: [Option<SpecialToken>; 7] = Default::default();
    for role in Role::ALL {
        roles[role as usize] = lookup(d, &configs, role, template.as_ref())?;
    }
    let has = |r: Role| roles[r as usize].is_some();
    let usual = |r: Role| r.usual_names().join(" or ");
    let mut missing: Vec<String> = [Role::Pad, Role::Mask]
        .into_iter()
        .filter(|&r| !has(r))
        .map(|r| format!("a {} token ({})", r.name(), usual(r)))
        .collect();
    if template.is_none() {
        missing.extend(
            [Role::Cls, Role::Sep]
                .into_iter()
                .filter(|&r| !has(r))
                .map(|r| format!("a {} token ({}) to frame sequences, as its post_processor adds none", r.name(), usual(r))),
        );
    }
    if !missing.is_empty() {
        return Err(Error::InvalidTokenizer(format!(
            "{} lacks {} (looked for <role>_token in {} beside it, at the tokenizer.json's post_processor, padding and model, then for the usual names in its vocabulary); \
             masked-LM batches need them: declare them in a tokenizer_config.json or pass the model's own tokenizer",
            d.source.display(),
            missing.join(", "),
            CONFIG_FILES.join(" and "))));
    }
    let (prefix, suffix): (Vec<u32>, Vec<u32>) = match &template {
        Some((before, after)) => (before.iter().map(|t| t.id).collect(), after.iter().map(|t| t.id).collect()),
        None => (vec![roles[Role::Cls as usize].as_ref().unwrap().id], vec![roles[Role::Sep as usize].as_ref().unwrap().id]),
    };
    let added = d.hf.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id);
    let mut ids: Vec<u32> = roles.iter().flatten().map(|t| t.id).chain(prefix.iter().copied()).chain(suffix.iter().copied()).chain(added).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(Specials { roles, prefix, suffix, ids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::StreamOptions;
    use crate::testutil::tmpdir;
    use crate::tokenize::{Backend, Tokenizer};
    use serde_json::json;

    const ROBERTA: [&str; 7] = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "a", "b"];

    /// A WordLevel tokenizer.json over `tokens` (ids in order; the first five special added
    /// tokens) with `post_processor` and `padding`, plus `configs` (file name, JSON) beside it.
    fn load(name: &str, tokens: &[&str], post_processor: Value, padding: Value, configs: &[(&str, Value)]) -> Result<Tokenizer> {
        let dir = tmpdir(&format!("specials-{name}"));
        let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), Value::from(i))).collect();
        let added: Vec<Value> = tokens[..5].iter().enumerate()
            .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let spec = json!({"version": "1.0", "truncation": null, "padding": padding, "added_tokens": added,
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": post_processor, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": tokens[3]}});
        std::fs::write(dir.join("tokenizer.json"), spec.to_string()).unwrap();
        for (file, value) in configs {
            std::fs::write(dir.join(file), value.to_string()).unwrap();
        }
        Tokenizer::from_path(&dir.join("tokenizer.json"), None, Backend::Hf)
    }

    fn roles(t: &Tokenizer) -> Vec<(&'static str, String, u32)> {
        t.specials.declared().map(|(r, s)| (r.name(), s.token.clone(), s.id)).collect()
    }

    fn error(r: Result<Tokenizer>) -> String {
        r.err().expect("the tokenizer must be refused").to_string()
    }

    #[test]
    fn roberta_processing_frames_and_names_cls_and_sep() {
        let t = load("roberta", &ROBERTA, json!({"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": true, "add_prefix_space": false}), Value::Null, &[]).unwrap();
        assert_eq!((t.specials.prefix.clone(), t.specials.suffix.clone()), (vec![0], vec![2]));
        let want = [("cls", "<s>", 0), ("sep", "</s>", 2), ("pad", "<pad>", 1), ("mask", "<mask>", 4), ("unk", "<unk>", 3)];
        assert_eq!(roles(&t), want.map(|(r, s, i)| (r, s.to_string(), i)));
        assert_eq!(t.specials.ids, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn declarations_beside_the_tokenizer_win_over_the_usual_names() {
        // Both naming conventions in one vocabulary: the usual-name order alone would pick [PAD]/[MASK].
        let tokens = ["[CLS]", "[PAD]", "[SEP]", "<unk>", "[MASK]", "<pad>", "<mask>", "<s>", "a"];
        let template = json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [0], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}});
        let padding = json!({"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": null, "pad_id": 1, "pad_type_id": 0, "pad_token": "[PAD]"});
        let config = json!({"mask_token": {"__type": "AddedToken", "content": "<mask>", "lstrip": true}, "bos_token": "<s>", "pad_token": null});
        let map = json!({"pad_token": "<pad>", "mask_token": "[MASK]"});
        let t = load("declared", &tokens, template, padding.clone(), &[("tokenizer_config.json", config), ("special_tokens_map.json", map)]).unwrap();
        let got = roles(&t);
        // mask from tokenizer_config.json (before the map), pad from the map (the config's is null),
        // cls/sep from the template, unk from the model, bos from the config.
        let want = [("cls", "[CLS]", 0), ("sep", "[SEP]", 2), ("pad", "<pad>", 5), ("mask", "<mask>", 6), ("unk", "<unk>", 3), ("bos", "<s>", 7)];
        assert_eq!(got, want.map(|(r, s, i)| (r, s.to_string(), i)));
        assert!(t.specials.ids.contains(&5) && t.specials.ids.contains(&6) && t.specials.ids.contains(&1), "declared and added specials");
        // Without the files, the tokenizer.json's padding names the pad token.
        let t = load("padding", &tokens, Value::Null, padding, &[]).unwrap();
        assert_eq!(t.specials.get(Role::Pad).unwrap().token, "[PAD]");
    }

    #[test]
    fn templates_with_only_a_prefix_or_several_tokens_frame_as_declared() {
        let special = |t: &str, id: u32| json!({"id": t, "ids": [id], "tokens": [t]});
        let piece = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
        let seq = json!({"Sequence": {"id": "A", "type_id": 0}});
        let template = |single: Vec<Value>| json!({"type": "TemplateProcessing", "single": single, "pair": [seq.clone()],
            "special_tokens": {"<s>": special("<s>", 0), "</s>": special("</s>", 2), "<mask>": special("<mask>", 4)}});
        let t = load("prefix", &ROBERTA, template(vec![piece("<s>"), seq.clone()]), Value::Null, &[]).unwrap();
        assert_eq!((t.specials.prefix.clone(), t.specials.suffix.clone()), (vec![0], vec![]));
        assert_eq!(t.specials.id(Role::Sep), Some(2), "sep falls back to the usual name");
        let err = StreamOptions { packing: true, ..StreamOptions::default() }.seq(&t).err().unwrap().to_string();
        assert!(err.contains("packing=True") && err.contains("packing=False"), "{err}");
        StreamOptions::default().seq(&t).unwrap();
        let t = load("two", &ROBERTA, template(vec![piece("<s>"), piece("<mask>"), seq.clone(), piece("</s>"), piece("</s>")]), Value::Null, &[]).unwrap();
        assert_eq!((t.specials.prefix.clone(), t.specials.suffix.clone()), (vec![0, 4], vec![2, 2]));
        let err = StreamOptions { seq_len: 4, ..StreamOptions::default() }.seq(&t).err().unwrap().to_string();
        assert!(err.contains("seq_len=4") && err.contains("4 special tokens"), "{err}");
    }

    #[test]
    fn unigram_names_its_unknown_token_by_id() {
        let dir = tmpdir("specials-unigram");
        let vocab: Vec<Value> = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "<oov>", "▁a"].iter().map(|t| json!([t, -1.0])).collect();
        let spec = json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
            "post_processor": null, "decoder": null, "model": {"type": "Unigram", "unk_id": 4, "vocab": vocab, "byte_fallback": false}});
        std::fs::write(dir.join("tokenizer.json"), spec.to_string()).unwrap();
        let t = Tokenizer::from_path(&dir.join("tokenizer.json"), None, Backend::Auto).unwrap();
        assert_eq!(t.specials.get(Role::Unk).unwrap(), &SpecialToken { token: "<oov>".into(), id: 4 });
        assert_eq!((t.specials.prefix.clone(), t.specials.suffix.clone()), (vec![0], vec![1]), "no post_processor: [CLS] … [SEP]");
        assert_eq!(t.word_rule(), "metaspace");
    }

    #[test]
    fn missing_or_wrong_declarations_are_named() {
        let no_mask = ["<s>", "<pad>", "</s>", "<unk>", "<x>", "a", "b"];
        let msg = error(load("nomask", &no_mask, Value::Null, Value::Null, &[]));
        assert!(msg.contains("a mask token ([MASK] or <mask>)") && msg.contains("tokenizer_config.json") && !msg.contains("cls"), "{msg}");
        let bare = ["<a>", "<b>", "<c>", "<unk>", "<mask>", "a", "b"];
        let msg = error(load("noframe", &bare, Value::Null, Value::Null, &[]));
        assert!(msg.contains("a cls token ([CLS] or <s>) to frame sequences") && msg.contains("a sep token") && msg.contains("a pad token"), "{msg}");
        let msg = error(load("wrong", &ROBERTA, Value::Null, Value::Null, &[("special_tokens_map.json", json!({"mask_token": "[MASK]"}))]));
        assert!(msg.contains("special_tokens_map.json declares mask_token \"[MASK]\"") && msg.contains("has no such token"), "{msg}");
        let msg = error(load("notadict", &ROBERTA, Value::Null, Value::Null, &[("tokenizer_config.json", json!(1))]));
        assert!(msg.contains("tokenizer_config.json is not a JSON object"), "{msg}");
        let msg = error(load("badvalue", &ROBERTA, Value::Null, Value::Null, &[("tokenizer_config.json", json!({"pad_token": 7}))]));
        assert!(msg.contains("pad_token in") && msg.contains("must be a string or an AddedToken dict"), "{msg}");
    }
}
