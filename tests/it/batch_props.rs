//! Property tests of BatchEmbedder on the simulated machine: for random
//! lengths, budgets, batch settings and injected memory refusals, the
//! output has the input's count and order, every text runs once, and every
//! batch respects the size and token limits and the budget.

use crate::fakes::{text, Fake, Machine, MIB};
use membatch::batch::{BatchConfig, BatchEmbedder};
use membatch::Error;
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn order_count_and_limits_hold(
        words in vec(0usize..320, 0..160),
        budget_mib in 56u64..400,
        min in 1usize..16,
        extra in 0usize..64,
        step in 1usize..9,
        max_tokens in proptest::option::of(256usize..4096),
        refuse in btree_set(0usize..30, 0..5),
    ) {
        let machine = Machine::new(50 * MIB);
        let mut fake = Fake::new(&machine);
        fake.refuse = refuse;
        let mut config = BatchConfig::builder().min_batch_size(min).max_batch_size(min + extra).step(step);
        if let Some(t) = max_tokens {
            config = config.max_batch_tokens(t);
        }
        let config = config.build().unwrap();
        let input: Vec<String> = words.iter().enumerate().map(|(i, &w)| text(i, w)).collect();
        let budget = budget_mib * MIB;
        let b = BatchEmbedder::new(fake, machine.budget(budget), config).unwrap();
        let result = b.embed(&input);
        let calls = b.embedder().calls.lock().clone();
        for c in &calls {
            prop_assert!(!c.texts.is_empty() && c.texts.len() <= min + extra, "size {}", c.texts.len());
            if let Some(t) = max_tokens {
                prop_assert!(c.texts.len() * c.padded <= t, "{} × {} > {t}", c.texts.len(), c.padded);
            }
        }
        prop_assert!(machine.highest() <= budget, "peak {} over budget {}", machine.highest(), budget);
        match result {
            Ok(out) => {
                let want: Vec<Vec<f32>> = input.iter().map(|t| Fake::vector(t)).collect();
                prop_assert_eq!(out, want);
                let mut seen: Vec<&String> = calls.iter().filter(|c| c.ok).flat_map(|c| &c.texts).collect();
                seen.sort();
                let mut all: Vec<&String> = input.iter().collect();
                all.sort();
                prop_assert_eq!(seen, all);
            }
            Err(Error::MemoryPressure { .. }) => {
                // Only when the embedder refused a batch of one text.
                let last = calls.last().unwrap();
                prop_assert!(!last.ok && last.texts.len() == 1);
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
