//! Print the oracle's verdicts (every strategy and variant under every read policy) as JSON
//! lines, one row each. `cargo xtask test` runs it on the host and, under qemu-user, on
//! powerpc64le, and compares the two.
//!
//! Usage: `oracle_table [ROUNDS [SEED...]]` (default: 200 rounds, seeds 1 2 3).

use libflush::sim::verdicts::{verdict_table, VerdictConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut cfg = VerdictConfig::default();
    if let Some(rounds) = args.next() {
        match rounds.parse() {
            Ok(r) => cfg.rounds = r,
            Err(e) => {
                eprintln!("oracle_table: bad ROUNDS `{rounds}`: {e}");
                std::process::exit(2);
            }
        }
        let seeds: Result<Vec<u64>, _> = args.map(|s| s.parse()).collect();
        match seeds {
            Ok(s) if !s.is_empty() => cfg.seeds = s,
            Ok(_) => {}
            Err(e) => {
                eprintln!("oracle_table: bad SEED: {e}");
                std::process::exit(2);
            }
        }
    }
    match verdict_table(&cfg) {
        Ok(rows) => {
            for row in rows {
                match serde_json::to_string(&row) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!("oracle_table: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
        Err(e) => {
            eprintln!("oracle_table: {e}");
            std::process::exit(1);
        }
    }
}
