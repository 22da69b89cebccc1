//! The bytes an ingesting execution holds are kept as chunks come (a chunk
//! costs its own objects, not the execution's), and must always be what
//! summing its objects gives: through replacements, refusals, and objects
//! restored behind the count's back (a restart, another host's rows).

use assets_platform::assets::model::{AssetObject, DataChunk, ExecutionLimits, State};
use assets_platform::assets::{ImportSource, Quotas, SourceType};
use chrono::Utc;
use proptest::prelude::*;

fn object(id: u8, label: usize, attribute: usize) -> AssetObject {
    let mut attributes = std::collections::BTreeMap::new();
    if attribute > 0 {
        attributes.insert("serial".to_owned(), vec!["s".repeat(attribute), "t".into()]);
    }
    AssetObject {
        external_id: format!("obj-{id}"),
        label: "l".repeat(label),
        attributes,
    }
}

fn ingesting() -> State {
    let mut state = State::default();
    state.add_workspace("ws".into());
    state
        .add_source(ImportSource::new("src".into(), "ws".into(), SourceType::External, None))
        .unwrap();
    state
        .start_execution("src", "e".into(), false, None, Utc::now())
        .unwrap();
    state
}

/// What summing the execution's objects gives.
fn summed(state: &State) -> u64 {
    let execution = state.execution_by_id("e").unwrap();
    execution.objects.values().map(AssetObject::held_bytes).sum()
}

#[test]
fn an_objects_bytes_are_its_strings() {
    // "obj-1" 5 + label 3 + "serial" 6 + "ss" 2 + "t" 1.
    assert_eq!(object(1, 3, 2).held_bytes(), 17);
}

#[derive(Debug, Clone)]
enum Step {
    /// A chunk of (id, label length, attribute length) objects.
    Chunk(Vec<(u8, usize, usize)>),
    /// An object written straight into the execution, as a store restores it.
    Restore(u8, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::collection::vec((0u8..12, 0usize..40, 0usize..20), 0..6).prop_map(Step::Chunk),
        1 => (0u8..12, 0usize..40).prop_map(|(id, label)| Step::Restore(id, label)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// After every step the count is the sum, and a chunk is refused exactly
    /// when storing it would take the sum over the limit.
    #[test]
    fn the_byte_count_is_always_the_sum_of_the_objects_held(
        steps in prop::collection::vec(step(), 1..30),
        limit in 0u64..400,
    ) {
        let mut state = ingesting();
        let limits = ExecutionLimits::from(Quotas { execution_bytes: limit, ..Quotas::default() });
        for step in steps {
            match step {
                Step::Chunk(objects) => {
                    let objects: Vec<AssetObject> = objects.iter().map(|&(id, l, a)| object(id, l, a)).collect();
                    // What the execution would hold: a copy, stored without limits.
                    let mut copy = std::collections::HashMap::new();
                    for (key, held) in &state.execution_by_id("e").unwrap().objects {
                        copy.insert(key.1.clone(), held.held_bytes());
                    }
                    for o in &objects {
                        copy.insert(o.external_id.clone(), o.held_bytes());
                    }
                    let after: u64 = copy.values().sum();
                    let before = summed(&state);
                    let chunk = DataChunk { client_generated_id: None, object_type_id: "t".into(), objects };
                    let result = state.add_chunk("src", "e", chunk, limits);
                    prop_assert_eq!(result.is_ok(), after <= limit, "{} → {} within {}: {:?}", before, after, limit, result);
                    if let Err(e) = result {
                        prop_assert_eq!(e.status, 413);
                        prop_assert!(e.message.contains("execution_bytes"), "{}", e.message);
                        prop_assert_eq!(summed(&state), before, "nothing of a refused chunk is stored");
                    }
                }
                Step::Restore(id, label) => {
                    let o = object(id, label, 0);
                    state
                        .restore_execution_mut("e")
                        .unwrap()
                        .objects
                        .insert(("t".into(), o.external_id.clone()), o);
                }
            }
            prop_assert_eq!(state.execution_bytes("e"), Some(summed(&state)));
        }
    }
}
