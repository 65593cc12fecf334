//! The conformance suite: one set of behaviours (the model test,
//! compare-and-swap, update, transactions, list, snapshots, export and import,
//! restore, backup and stats, errors) run against every way of reaching a
//! store: embedded, through a holder in the same process, through a
//! `statelog serve` process, and (feature `etcd-tests`, which needs `etcd` on
//! PATH) on etcd. Each must give the same results, versions, revisions and
//! errors; on etcd, what does not apply must say so.

// The helpers of the library's tests, shared rather than copied.
#[path = "../../../tests/common/mod.rs"]
mod common;
// Real etcd members (feature `etcd-tests`: needs `etcd` on PATH).
#[cfg(feature = "etcd-tests")]
#[allow(dead_code)]
#[path = "../../../tests/etcd/harness.rs"]
mod etcd_harness;

mod behaviour;
mod coordination;
mod model;
mod ways;

use statelog::Options;

/// One test per behaviour for a way of reaching a store.
macro_rules! behaviours {
    ($way:expr) => {
        use super::*;

        #[test]
        fn compare_and_swap() {
            behaviour::compare_and_swap(&$way);
        }

        #[test]
        fn update() {
            behaviour::update(&$way);
        }

        #[test]
        fn transactions() {
            behaviour::transactions(&$way);
        }

        #[test]
        fn list() {
            behaviour::list(&$way);
        }

        #[test]
        fn snapshots() {
            behaviour::snapshots(&$way);
        }

        #[test]
        fn export_import() {
            behaviour::export_import(&$way);
        }

        #[test]
        fn restore_records() {
            behaviour::restore_records(&$way);
        }

        #[test]
        fn backup_and_stats() {
            behaviour::backup_and_stats(&$way);
        }

        #[test]
        fn errors() {
            behaviour::errors(&$way);
        }

        #[test]
        fn watch_and_history() {
            behaviour::watch_and_history(&$way);
        }

        #[test]
        fn hot_record_patches() {
            coordination::hot_record_patches(&$way);
        }

        #[test]
        fn hot_record_updates() {
            coordination::hot_record_updates(&$way);
        }

        #[test]
        fn preconditions() {
            coordination::preconditions(&$way);
        }

        #[test]
        fn locks_and_fences() {
            coordination::locks_and_fences(&$way);
        }

        #[test]
        fn leases_end_with_their_records() {
            coordination::leases_end_with_their_records(&$way);
        }

        #[test]
        fn idempotency_keys() {
            coordination::idempotency_keys(&$way);
        }
    };
}

mod embedded {
    behaviours!(ways::Embedded);

    #[test]
    fn the_store_behaves_like_the_model() {
        model::the_store_behaves_like_the_model(&ways::Embedded, Options::default(), 48);
    }

    #[test]
    fn the_model_holds_across_segment_rotations() {
        let options = Options::default().segment_size(4096).preallocate(0);
        model::the_store_behaves_like_the_model(&ways::Embedded, options, 48);
    }
}

mod in_process_holder {
    behaviours!(ways::InProcessHolder);

    #[test]
    fn the_store_behaves_like_the_model() {
        model::the_store_behaves_like_the_model(&ways::InProcessHolder, Options::default(), 32);
    }

    #[test]
    fn the_model_holds_across_segment_rotations() {
        let options = Options::default().segment_size(4096).preallocate(0);
        model::the_store_behaves_like_the_model(&ways::InProcessHolder, options, 16);
    }
}

mod serve_process {
    behaviours!(ways::ServeProcess);

    #[test]
    fn a_watch_outlives_a_killed_holder() {
        behaviour::a_watch_outlives_its_holder(true);
    }

    #[test]
    fn a_watch_outlives_a_closing_holder() {
        behaviour::a_watch_outlives_its_holder(false);
    }

    #[test]
    fn the_store_behaves_like_the_model() {
        model::the_store_behaves_like_the_model(&ways::ServeProcess, Options::default(), 16);
    }
}

/// On etcd (feature `etcd-tests`): each store on a one-member etcd of its own.
#[cfg(feature = "etcd-tests")]
mod etcd {
    behaviours!(ways::Etcd);

    #[test]
    fn the_store_behaves_like_the_model() {
        model::the_store_behaves_like_the_model(&ways::Etcd, Options::default(), 16);
    }
}
