//! Every option of a masked-LM stream, declared once: its type, default, documentation (the `///`
//! lines, which Python shows as the option's help) and, in [`StreamOptions::validate`], its rules.
//!
//! Python builds the same struct through `distilx._native.StreamOptions(**options)`: values
//! arrive as [`Value`]s, are converted by name ([`StreamOptions::set`]) and validated here, so
//! `MaskedLMStream(**options)`, `count_tokens`, `build_cache` and `TrainConfig.data` share one set
//! of names, defaults and rules. Adding an option is one entry below (plus its rule, if any) and
//! its line in `python/distilx/_native.pyi` (a test compares the two).

use std::fmt;
use std::sync::Arc;

use crate::batches::{BatchShape, Padding};
use crate::cancel::Cancel;
use crate::corpus::{OnBadJson, ReadOptions};
use crate::error::{Error, Result};
use crate::masking::{MaskConfig, Mode, TargetCount};
use crate::sequences::SeqConfig;
use crate::specials::Role;
use crate::source::{Shard, Tokenizing};
use crate::tokenize::{thread_pool, Tokenizer};

/// The most ranks a stream is split across (the counting pass keeps one row counter per rank).
pub const MAX_WORLD_SIZE: u64 = 1 << 16;
/// The most tokenizer/masking threads (more only contend; a typo like 10**6 would start them all).
pub const MAX_THREADS: usize = 1024;
/// The longest document (line) the reader holds: a longer line is skipped without being held.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 30;
/// The most memory the stream's buffers may need ([`StreamOptions::buffer_bytes`]): larger sizes
/// are refused up front instead of aborting the process when an allocation fails.
pub const MAX_BUFFER_BYTES: u128 = 16 << 30;
/// [`StreamOptions::buffer_bytes`]'s cost model: per token slot of a window (its u32 id, its
/// word-start flag, and the three int64 arrays of its masked batch), per row (its vectors and
/// place), per token slot of a queued batch (three int64 arrays), per queued batch (its queue slot).
const WINDOW_BYTES_PER_TOKEN: u128 = 4 + 1 + 3 * 8;
const BYTES_PER_ROW: u128 = 128;
const QUEUE_BYTES_PER_TOKEN: u128 = 3 * 8;
const BYTES_PER_QUEUED_BATCH: u128 = 256;

/// An option's value as it arrives from Python or a config file, before conversion.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl fmt::Display for Value {
    /// As Python would print the value (messages name what the user wrote).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => write!(f, "None"),
            Value::Bool(b) => write!(f, "{}", if *b { "True" } else { "False" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A Rust type an option can have: how a [`Value`] converts to it, and how Python spells it.
pub trait OptionType: Sized {
    /// What a value must be, for error messages ("an integer >= 0").
    fn expected() -> String;
    /// Its annotation in `_native.pyi`.
    fn python_type() -> String;
    fn from_value(v: &Value) -> Option<Self>;
    fn to_value(&self) -> Value;
}

/// A scalar option type: what a value must be, its Python name, and the two conversions.
macro_rules! scalar_option {
    ($t:ty, $expected:literal, $python:literal, |$v:ident| $from:expr, |$s:ident| $to:expr) => {
        impl OptionType for $t {
            fn expected() -> String {
                $expected.into()
            }
            fn python_type() -> String {
                $python.into()
            }
            fn from_value($v: &Value) -> Option<Self> {
                $from
            }
            fn to_value(&self) -> Value {
                let $s = self;
                $to
            }
        }
    };
}
scalar_option!(usize, "an integer >= 0", "int", |v| match v { Value::Int(i) => usize::try_from(*i).ok(), _ => None }, |s| Value::Int(*s as i128));
scalar_option!(u64, "an integer >= 0", "int", |v| match v { Value::Int(i) => u64::try_from(*i).ok(), _ => None }, |s| Value::Int(*s as i128));
// An int is a number too (mlm_probability=1), as in Python.
scalar_option!(f64, "a number", "float", |v| match v { Value::Float(x) => Some(*x), Value::Int(i) => Some(*i as f64), _ => None }, |s| Value::Float(*s));
scalar_option!(bool, "True or False", "bool", |v| match v { Value::Bool(b) => Some(*b), _ => None }, |s| Value::Bool(*s));
scalar_option!(String, "a string", "str", |v| match v { Value::Str(s) => Some(s.clone()), _ => None }, |s| Value::Str(s.clone()));

impl<T: OptionType> OptionType for Option<T> {
    fn expected() -> String {
        format!("None or {}", T::expected())
    }
    fn python_type() -> String {
        format!("Optional[{}]", T::python_type())
    }
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::None => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::None, T::to_value)
    }
}

/// An enum option, spelled in Python as one of a few strings.
macro_rules! choice_option {
    ($t:ty { $($variant:ident = $name:literal),+ }) => {
        impl OptionType for $t {
            fn expected() -> String {
                let names: Vec<String> = [$($name),+].iter().map(|n| format!("{n:?}")).collect();
                match names.split_last() {
                    Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                    _ => names.join(""),
                }
            }
            fn python_type() -> String {
                let names: Vec<String> = [$($name),+].iter().map(|n| format!("{n:?}")).collect();
                format!("Literal[{}]", names.join(", "))
            }
            fn from_value(v: &Value) -> Option<Self> {
                match v {
                    $(Value::Str(s) if s == $name => Some(<$t>::$variant),)+
                    _ => None,
                }
            }
            fn to_value(&self) -> Value {
                Value::Str(match self { $(<$t>::$variant => $name,)+ }.into())
            }
        }
    };
}
choice_option!(Mode { Uniform = "uniform", Frequency = "frequency", WholeWord = "whole_word" });
choice_option!(TargetCount { Eligible = "eligible", AllTokens = "all_tokens" });
choice_option!(Padding { Fixed = "fixed", Dynamic = "dynamic" });
choice_option!(OnBadJson { Skip = "skip", Raise = "raise" });

/// One option as Python sees it.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: &'static str,
    pub python_type: String,
    pub default: Value,
    /// The option's `///` documentation, one paragraph.
    pub doc: String,
    /// Whether it changes the batches (part of a resume state's fingerprint) rather than only how
    /// they are produced (threads, queue depth, error policy).
    pub changes_batches: bool,
}

macro_rules! stream_options {
    // `batches`: the option changes what the stream yields; `runtime`: only how it is produced.
    (@changes_batches batches) => { true };
    (@changes_batches runtime) => { false };
    ($( $(#[doc = $doc:literal])+ $name:ident: $ty:ty = $default:expr, $role:ident; )+) => {
        /// Every option of a masked-LM stream (see the module docs).
        #[derive(Clone, Debug, PartialEq)]
        pub struct StreamOptions {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
        }

        impl Default for StreamOptions {
            fn default() -> Self {
                StreamOptions { $( $name: $default, )+ }
            }
        }

        impl StreamOptions {
            /// Every option in declaration order: name, Python type, default, documentation.
            pub fn fields() -> Vec<Field> {
                let defaults = StreamOptions::default();
                vec![$(Field {
                    name: stringify!($name),
                    python_type: <$ty as OptionType>::python_type(),
                    default: defaults.$name.to_value(),
                    doc: [$($doc),+].iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
                    changes_batches: stream_options!(@changes_batches $role),
                }),+]
            }

            /// Set option `name` from `value` (its type checked; the rules wait for `validate`).
            pub fn set(&mut self, name: &str, value: &Value) -> Result<()> {
                match name {
                    $( stringify!($name) => self.$name = convert(name, value)?, )+
                    _ => return Err(unknown_option(name)),
                }
                Ok(())
            }

            /// The value of option `name`, or None for an unknown name.
            pub fn get(&self, name: &str) -> Option<Value> {
                match name {
                    $( stringify!($name) => Some(self.$name.to_value()), )+
                    _ => None,
                }
            }
        }
    };
}

stream_options! {
    /// Tokens per row, the tokenizer's framing ([CLS]/[SEP], <s>/</s>) included (>= 3).
    seq_len: usize = 128, batches;
    /// Rows per batch (>= 1).
    batch_size: usize = 32, batches;
    /// Share of the eligible (non-special) tokens that become prediction targets, in [0, 1].
    mlm_probability: f64 = 0.15, batches;
    /// Share of the targets replaced by the mask token ([MASK], <mask>), in [0, 1].
    mask_replace_prob: f64 = 0.8, batches;
    /// Share of the targets replaced by a random non-special id (mask_replace_prob + this <= 1;
    /// the rest keep their token).
    random_replace_prob: f64 = 0.1, batches;
    /// "uniform": each eligible token with mlm_probability (BERT, RoBERTa); "frequency": a fixed
    /// number per batch drawn with weight count^-smoothing (DistilBERT's recipe; needs a token-count
    /// pass or token_counts); "whole_word": all tokens of a word together.
    masking: Mode = Mode::Uniform, batches;
    /// Frequency masking's targets per batch: "eligible" = round(mlm_probability x eligible tokens),
    /// the same rate as the other modes; "all_tokens" = ceil(mlm_probability x all real tokens,
    /// [CLS]/[SEP] included), DistilBERT's original count (more targets; docs/data.md).
    frequency_targets: TargetCount = TargetCount::Eligible, batches;
    /// Frequency masking's exponent: a token's weight is count^-smoothing (DistilBERT: 0.7).
    smoothing: f64 = 0.7, batches;
    /// Seeds the shuffles and the masks (with the epoch).
    seed: u64 = 0, batches;
    /// This process's rank: it reads documents i with i % world_size == rank.
    rank: u64 = 0, batches;
    /// Number of ranks (1 to 65536); with more than one, every rank yields the same number of
    /// batches (a counting pass at construction) and drop_last is on.
    world_size: u64 = 1, batches;
    /// Fill rows to seq_len across documents (each followed by the framing's [SEP] / </s>) instead of
    /// one document per row.
    packing: bool = false, batches;
    /// Rows shorter than this (in tokens, the framing included) are dropped.
    min_seq_len: usize = 12, batches;
    /// Rows (documents when packing) whose share of unknown tokens is at least this are dropped, in [0, 1].
    max_unk_ratio: f64 = 0.5, batches;
    /// "fixed": every batch padded to seq_len; "dynamic": rows grouped by length inside a window,
    /// each batch padded to its longest row.
    padding: Padding = Padding::Fixed, batches;
    /// Dynamic padding rounds a batch's length up to a multiple of this (>= 1).
    pad_to_multiple_of: usize = 8, batches;
    /// Shuffle rows inside each window (and a cache's documents each epoch).
    shuffle: bool = true, batches;
    /// Drop a last batch smaller than batch_size (always on with world_size > 1).
    drop_last: bool = true, batches;
    /// Window size in batches: the span of shuffling and length grouping (>= 1; with batch_size,
    /// seq_len and prefetch, the buffers must fit in 16 GiB, see docs/data.md).
    window_batches: usize = 64, batches;
    /// Tokenizer and masking threads; None = one per core (1 to 1024).
    num_threads: Option<usize> = None, runtime;
    /// Batches prepared ahead of the consumer (>= 1).
    prefetch: usize = 16, runtime;
    /// The field holding the text: the key in .jsonl lines; the column of Parquet, Arrow and datasets.
    text_field: String = "text".into(), batches;
    /// In .txt files, blank-line separated paragraphs are the documents instead of lines.
    paragraphs: bool = false, batches;
    /// A malformed .jsonl line: "skip" (counted in stats) or "raise" (ValueError naming file and line).
    on_bad_json: OnBadJson = OnBadJson::Skip, runtime;
    /// A line longer than this many bytes is skipped (streamed past, counted), never held (1 to 2^30).
    max_document_bytes: usize = 16 << 20, batches;
}

/// The rule for a thread count (the stream's `num_threads`, and every thread pool the engine starts).
pub fn check_num_threads(num_threads: Option<usize>) -> Result<()> {
    match num_threads {
        Some(n) if n == 0 || n > MAX_THREADS => {
            Err(Error::InvalidConfig(format!("num_threads must be None (one per core) or 1 to {MAX_THREADS}, got {n}")))
        }
        _ => Ok(()),
    }
}

fn convert<T: OptionType>(name: &str, value: &Value) -> Result<T> {
    T::from_value(value).ok_or_else(|| Error::InvalidConfig(format!("{name} must be {}, got {value}", T::expected())))
}

fn unknown_option(name: &str) -> Error {
    let known: Vec<&str> = StreamOptions::fields().iter().map(|f| f.name).collect();
    Error::InvalidConfig(format!("unknown stream option {name:?}; the options are: {}", known.join(", ")))
}

impl StreamOptions {
    /// Options from (name, value) pairs over the defaults, validated.
    pub fn from_values<'a>(values: impl IntoIterator<Item = (&'a str, Value)>) -> Result<Self> {
        let mut opts = StreamOptions::default();
        for (name, value) in values {
            opts.set(name, &value)?;
        }
        opts.validate()?;
        Ok(opts)
    }

    /// Check the rules the option docs state; the error names the option and what it must be.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        for (name, value, low) in [
            ("seq_len", self.seq_len, 3),
            ("batch_size", self.batch_size, 1),
            ("window_batches", self.window_batches, 1),
            ("prefetch", self.prefetch, 1),
            ("pad_to_multiple_of", self.pad_to_multiple_of, 1),
            ("max_document_bytes", self.max_document_bytes, 1),
            ("world_size", self.world_size as usize, 1),
        ] {
            if value < low {
                let why = if name == "seq_len" { " (room for [CLS], a token and [SEP])" } else { "" };
                return bad(format!("{name} must be >= {low}{why}, got {value}"));
            }
        }
        if self.rank >= self.world_size {
            return bad(format!("rank must satisfy 0 <= rank < world_size, got rank={} world_size={}", self.rank, self.world_size));
        }
        check_num_threads(self.num_threads)?;
        if self.world_size > MAX_WORLD_SIZE {
            return bad(format!("world_size must be at most {MAX_WORLD_SIZE}, got {}", self.world_size));
        }
        if self.max_document_bytes > MAX_DOCUMENT_BYTES {
            return bad(format!("max_document_bytes must be at most {MAX_DOCUMENT_BYTES} (1 GiB), got {}", self.max_document_bytes));
        }
        let need = self.buffer_bytes();
        if need > MAX_BUFFER_BYTES {
            return bad(format!(
                "window_batches={} x batch_size={} x seq_len={} (+ prefetch={} batches) would need about {:.1} GiB of buffers, \
                 more than the {} GiB the engine allows; lower window_batches or prefetch (or batch_size, seq_len)",
                self.window_batches,
                self.batch_size,
                self.seq_len,
                self.prefetch,
                need as f64 / (1u64 << 30) as f64,
                MAX_BUFFER_BYTES >> 30));
        }
        for (name, p) in [
            ("mlm_probability", self.mlm_probability),
            ("mask_replace_prob", self.mask_replace_prob),
            ("random_replace_prob", self.random_replace_prob),
            ("max_unk_ratio", self.max_unk_ratio),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} must lie in [0, 1], got {p}"));
            }
        }
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-12 {
            return bad(format!(
                "mask_replace_prob + random_replace_prob = {} exceeds 1; the rest (kept unchanged) cannot be negative",
                self.mask_replace_prob + self.random_replace_prob));
        }
        if !self.smoothing.is_finite() {
            // NaN weights would exclude every token (no target at all), an infinite exponent all but the rarest.
            return bad(format!("smoothing must be a finite number (DistilBERT uses 0.7), got {}", self.smoothing));
        }
        Ok(())
    }

    /// The most memory the stream's buffers need: one window of rows (`window_batches x batch_size`
    /// rows of up to `seq_len` tokens) with its masked batches, and `prefetch` queued batches.
    /// Computed without overflow for any option values.
    pub fn buffer_bytes(&self) -> u128 {
        let (rows, seq, batch) = ((self.window_batches as u128) * (self.batch_size as u128), self.seq_len as u128, self.batch_size as u128);
        let window = rows * (seq * WINDOW_BYTES_PER_TOKEN + BYTES_PER_ROW);
        let queue = (self.prefetch as u128) * (batch * seq * QUEUE_BYTES_PER_TOKEN + BYTES_PER_QUEUED_BATCH);
        window + queue
    }

    /// Each option with its value (Python's `StreamOptions.to_dict()`).
    pub fn values(&self) -> Vec<(&'static str, Value)> {
        Self::fields().into_iter().map(|f| (f.name, self.get(f.name).expect("a declared option"))).collect()
    }

    pub fn read(&self) -> ReadOptions {
        ReadOptions {
            paragraphs: self.paragraphs,
            text_field: self.text_field.clone(),
            on_bad_json: self.on_bad_json,
            max_document_bytes: self.max_document_bytes,
            cancel: Cancel::new(),
        }
    }

    /// Framing and filters with `tok`'s specials; refused when its framing leaves no room for a
    /// document in `seq_len`, or when packing has no suffix to separate documents with.
    pub fn seq(&self, tok: &Tokenizer) -> Result<SeqConfig> {
        let (prefix, suffix) = (tok.specials.prefix.clone(), tok.specials.suffix.clone());
        if prefix.len() + suffix.len() >= self.seq_len {
            return Err(Error::InvalidConfig(format!(
                "seq_len={} leaves no room for text: {} frames every row with {} special tokens; raise seq_len",
                self.seq_len, tok.source.display(), prefix.len() + suffix.len())));
        }
        if self.packing && suffix.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "packing=True separates documents with the special tokens that end a sequence, and {}'s template ends with none; use packing=False",
                tok.source.display())));
        }
        Ok(SeqConfig {
            seq_len: self.seq_len,
            packing: self.packing,
            min_seq_len: self.min_seq_len,
            max_unk_ratio: self.max_unk_ratio,
            prefix,
            suffix,
            unk_id: tok.specials.id(Role::Unk),
            word_starts: self.masking == Mode::WholeWord,
        })
    }

    pub fn shape(&self) -> BatchShape {
        BatchShape {
            batch_size: self.batch_size,
            seq_len: self.seq_len,
            padding: self.padding,
            pad_to_multiple_of: self.pad_to_multiple_of,
            shuffle: self.shuffle,
            // Equal batch counts across ranks need full batches only.
            drop_last: self.drop_last || self.world_size > 1,
        }
    }

    pub fn mask(&self) -> MaskConfig {
        MaskConfig {
            mode: self.masking,
            mlm_probability: self.mlm_probability,
            mask_replace_prob: self.mask_replace_prob,
            random_replace_prob: self.random_replace_prob,
            targets: self.frequency_targets,
            smoothing: self.smoothing,
        }
    }

    /// What reading a corpus needs: `tokenizer`, these reading options, `num_threads` fresh threads,
    /// and `cancel` to stop it.
    pub fn tokenizing(&self, tokenizer: &Arc<Tokenizer>, cancel: &Cancel) -> Result<Tokenizing> {
        Ok(Tokenizing { tokenizer: tokenizer.clone(), read: self.read(), pool: Arc::new(thread_pool(self.num_threads)?), cancel: cancel.clone() })
    }

    pub fn shard(&self) -> Shard {
        Shard { rank: self.rank, world: self.world_size }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_defaults_and_docs_come_from_the_declaration() {
        let fields = StreamOptions::fields();
        let seq = fields.iter().find(|f| f.name == "seq_len").unwrap();
        assert_eq!((seq.python_type.as_str(), &seq.default), ("int", &Value::Int(128)));
        assert!(seq.doc.starts_with("Tokens per row") && seq.changes_batches);
        let masking = fields.iter().find(|f| f.name == "masking").unwrap();
        assert_eq!(masking.python_type, r#"Literal["uniform", "frequency", "whole_word"]"#);
        let threads = fields.iter().find(|f| f.name == "num_threads").unwrap();
        assert_eq!((threads.python_type.as_str(), &threads.default, threads.changes_batches), ("Optional[int]", &Value::None, false));
        // Every declared option reads back what it was set to.
        let mut opts = StreamOptions::default();
        for f in &fields {
            opts.set(f.name, &f.default).unwrap();
            assert_eq!(opts.get(f.name).as_ref(), Some(&f.default), "{}", f.name);
        }
        assert_eq!(opts, StreamOptions::default());
    }

    #[test]
    fn values_are_converted_by_type_and_rules_checked() {
        let ok = StreamOptions::from_values([("seq_len", Value::Int(64)), ("masking", Value::Str("whole_word".into())), ("mlm_probability", Value::Int(1))]).unwrap();
        assert_eq!((ok.seq_len, ok.masking, ok.mlm_probability), (64, Mode::WholeWord, 1.0));
        let err = |name: &str, v: Value| StreamOptions::from_values([(name, v)]).unwrap_err().to_string();
        assert!(err("seq_len", Value::Float(64.0)).contains("seq_len must be an integer >= 0, got 64.0"));
        assert!(err("seed", Value::Int(-1)).contains("seed must be an integer >= 0, got -1"));
        assert!(err("packing", Value::Int(1)).contains("packing must be True or False"));
        assert!(err("masking", Value::Str("random".into())).contains(r#"masking must be "uniform", "frequency" or "whole_word", got "random""#));
        assert!(err("no_such", Value::None).contains("unknown stream option \"no_such\""));
        assert!(err("seq_len", Value::Int(2)).contains("seq_len must be >= 3"));
        assert!(err("mlm_probability", Value::Float(1.5)).contains("mlm_probability must lie in [0, 1], got 1.5"));
        assert!(err("smoothing", Value::Float(f64::NAN)).contains("smoothing must be a finite number"));
        assert!(err("num_threads", Value::Int(0)).contains("num_threads"));
        assert!(StreamOptions::from_values([("rank", Value::Int(2)), ("world_size", Value::Int(2))]).unwrap_err().to_string().contains("rank"));
        assert!(StreamOptions::from_values([("mask_replace_prob", Value::Float(0.9)), ("random_replace_prob", Value::Float(0.2))])
            .unwrap_err()
            .to_string()
            .contains("exceeds 1"));
        // The boundaries the docs state are allowed.
        for p in [0.0, 1.0] {
            StreamOptions::from_values([("mlm_probability", Value::Float(p))]).unwrap();
        }
    }

    /// Sizes that cannot be allocated used to abort the process ("memory allocation of N bytes
    /// failed") or start a million threads; each is now refused up front, naming the option.
    #[test]
    fn sizes_beyond_the_limits_are_refused() {
        let err = |values: &[(&str, i128)]| {
            StreamOptions::from_values(values.iter().map(|&(n, v)| (n, Value::Int(v)))).err().map(|e| e.to_string())
        };
        for (values, names) in [
            (&[("batch_size", 10_i128.pow(7))][..], "batch_size=10000000"),
            (&[("window_batches", 10_i128.pow(9))][..], "window_batches=1000000000"),
            (&[("prefetch", 10_i128.pow(9))][..], "prefetch=1000000000"),
            (&[("seq_len", 1 << 40)][..], "seq_len=1099511627776"),
            (&[("world_size", 1 << 40)][..], "world_size must be at most 65536"),
            (&[("num_threads", 10_i128.pow(6))][..], "num_threads must be None (one per core) or 1 to 1024"),
            (&[("max_document_bytes", 1 << 31)][..], "max_document_bytes must be at most"),
        ] {
            let msg = err(values).unwrap_or_else(|| panic!("{values:?} was accepted"));
            assert!(msg.contains(names), "{values:?}: {msg}");
        }
        // The limits themselves, and a large but real configuration, are allowed.
        for values in [
            &[("world_size", 1 << 16), ("rank", (1 << 16) - 1)][..],
            &[("num_threads", 1024)][..],
            &[("max_document_bytes", 1 << 30)][..],
            &[("seq_len", 512), ("batch_size", 256), ("window_batches", 64), ("prefetch", 64)][..],
        ] {
            assert_eq!(err(values), None, "{values:?}");
        }
        assert!(StreamOptions::default().buffer_bytes() < 16 << 20, "the defaults need a few MB");
    }
}
