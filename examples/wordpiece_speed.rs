//! Single-thread speed of the fast WordPiece path vs the tokenizers crate on the same corpus, in
//! one run (a profiling aid; the benchmark of record is bench/bench_tokenizer.py).
//!
//!   cargo run --release --example wordpiece_speed -- TOKENIZER_JSON CORPUS [MAX_MB]

use std::str::FromStr;
use std::time::Instant;

use distilx::wordpiece::FastWordPiece;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: wordpiece_speed TOKENIZER_JSON CORPUS [MAX_MB]");
        std::process::exit(2);
    }
    let json = std::fs::read_to_string(&args[1]).expect("read tokenizer.json");
    let corpus = std::fs::read_to_string(&args[2]).expect("read corpus");
    let max_bytes = args.get(3).map_or(usize::MAX, |mb| (mb.parse::<f64>().unwrap() * 1e6) as usize);
    let mut lines = Vec::new();
    let mut total = 0;
    for line in corpus.lines() {
        if total >= max_bytes {
            break;
        }
        total += line.len();
        lines.push(line);
    }

    let t = Instant::now();
    let fast = FastWordPiece::from_tokenizer_json(&json).unwrap().expect("BERT WordPiece");
    println!("fast path built in {:.3} s", t.elapsed().as_secs_f64());
    let mut reference = tokenizers::Tokenizer::from_str(&json).unwrap();
    reference.with_truncation(None).unwrap();
    reference.with_padding(None);

    // Warm-up: fill the char tables the corpus needs (a one-time cost per process).
    let mut ids = Vec::new();
    let t = Instant::now();
    for line in &lines {
        fast.encode_into(line, &mut ids, None);
    }
    println!("first pass (fills char tables): {:.3} s", t.elapsed().as_secs_f64());

    let mb = total as f64 / 1e6;
    let mut best_fast = f64::MAX;
    let mut fast_ids = Vec::new();
    for _ in 0..3 {
        fast_ids.clear();
        let t = Instant::now();
        for line in &lines {
            fast.encode_into(line, &mut fast_ids, None);
        }
        best_fast = best_fast.min(t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let mut ref_ids: Vec<u32> = Vec::new();
    for line in &lines {
        ref_ids.extend_from_slice(reference.encode_fast(*line, false).unwrap().get_ids());
    }
    let ref_s = t.elapsed().as_secs_f64();
    let n = fast_ids.len() as f64;
    println!("corpus: {} lines, {:.1} MB, {} tokens", lines.len(), mb, fast_ids.len());
    println!("fast WordPiece : {:8.2} M tok/s {:8.1} MB/s", n / best_fast / 1e6, mb / best_fast);
    println!("tokenizers     : {:8.2} M tok/s {:8.1} MB/s", n / ref_s / 1e6, mb / ref_s);
    println!("ratio          : {:8.2}x   ids identical: {}", ref_s / best_fast, fast_ids == ref_ids);

    let t = Instant::now();
    let all: String = (0..=0x10FFFFu32).filter_map(char::from_u32).collect();
    fast.encode_into(&all, &mut ids, None);
    println!("all 1.1M chars once (fills every table): {:.3} s", t.elapsed().as_secs_f64());
}
