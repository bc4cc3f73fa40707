//! The registry behaviour suites (`tests/common/registry_suite.rs`,
//! `tests/common/lifecycle_suite.rs`, `tests/common/serving_suite.rs` and
//! `tests/common/retention_suite.rs`),
//! instantiated once per backend: every behaviour holds on every store.
//!
//! Lifecycle, serving and retention tests are in `lifecycle`, `serving` and
//! `retention` modules under each backend's, so `cargo test --test
//! registry_behaviour lifecycle` runs just them. Tests of the metadata store
//! alone are in `metadata::<backend>`, once per metadata store (the `_packed`
//! backends share theirs with the plain ones).

#[macro_use]
mod common;

use common::backends::Fixture;
use common::{lifecycle_suite, registry_suite, retention_suite, serving_suite};

/// Instantiates every suite function listed as a test in a module named after the
/// backend (lifecycle and serving ones in submodules), whose fixture comes from
/// `Fixture::<backend>()`. Attributes before the backend's name go on each of its
/// tests: `ignore` unless its server is configured (see `common/servers.rs`).
macro_rules! suite_for_backend {
    (
        $attrs:tt $backend:ident,
        registry: [$($test:ident),* $(,)?],
        lifecycle: [$($life:ident),* $(,)?],
        serving: [$($serving:ident),* $(,)?],
        retention: [$($retention:ident),* $(,)?]
    ) => {
        mod $backend {
            $( backend_test!($attrs $test, super::Fixture::$backend, super::registry_suite::$test); )*
            mod lifecycle {
                $(
                    backend_test!(
                        $attrs $life,
                        super::super::Fixture::$backend,
                        super::super::lifecycle_suite::$life
                    );
                )*
            }
            mod serving {
                $(
                    backend_test!(
                        $attrs $serving,
                        super::super::Fixture::$backend,
                        super::super::serving_suite::$serving
                    );
                )*
            }
            mod retention {
                $(
                    backend_test!(
                        $attrs $retention,
                        super::super::Fixture::$backend,
                        super::super::retention_suite::$retention
                    );
                )*
            }
        }
    };
}

/// One test: `check` on a fresh fixture from `make`, with the attributes given.
macro_rules! backend_test {
    ([$(#[$attr:meta])*] $name:ident, $make:path, $check:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() {
            let fixture = $make().await;
            $check(&fixture).await;
            fixture.clean_up().await;
        }
    };
}

/// Instantiates both suites for each backend.
macro_rules! suite {
    (
        backends: [$($(#[$attr:meta])* $backend:ident),* $(,)?],
        registry: $registry:tt,
        lifecycle: $lifecycle:tt,
        serving: $serving:tt,
        retention: $retention:tt $(,)?
    ) => {
        $( suite_for_backend!([$(#[$attr])*] $backend, registry: $registry, lifecycle: $lifecycle, serving: $serving, retention: $retention); )*
    };
}

suite! {
    // The one list of backends: a new backend is a constructor on `Fixture` and
    // its name here.
    backends: [
        memory, memory_checkpoints, dyn_memory, local, dyn_local, local_packed,
        object_memory, object_memory_packed, object_local,
        #[cfg_attr(not(modelreg_s3), ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)")]
        s3,
        #[cfg_attr(not(modelreg_s3), ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)")]
        s3_packed,
        #[cfg_attr(not(modelreg_azure), ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)")]
        azure,
        #[cfg_attr(not(modelreg_azure), ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)")]
        azure_packed,
    ],
    registry: [
        create_model_and_reject_duplicates,
        concurrent_creates_of_one_model,
        unknown_model_is_not_found,
        model_tags_and_metric_specs,
        register_from_dir_file_and_bytes,
        identical_files_are_stored_once,
        semver_labels_are_unique_within_a_model,
        every_reference_form_resolves,
        latest_skips_deprecated_versions,
        metrics_are_merged,
        list_versions_filters,
        history_records_every_event_in_order,
        parents_must_exist,
        interesting_sizes_round_trip,
        fetch_writes_identical_files,
        fetch_with_every_link_mode,
        fetch_refuses_an_occupied_destination,
        fetch_into_an_existing_empty_directory,
        corrupt_blob_fails_fetch_and_verify,
        missing_blob_is_not_found,
        writes_are_visible_across_handles,
        float_values_survive_storage_exactly,
        reopened_registry_sees_everything,
        concurrent_writers_on_clones,
        concurrent_writers_on_separate_registries,
        gc_deletes_only_old_unreferenced_blobs,
        gc_deletes_nothing_when_a_reference_is_unreadable,
        gc_racing_registrations_never_deletes_a_referenced_blob,
        hostile_in_memory_paths_are_rejected,
        lineage_spans_models_datasets_and_code,
        lineage_graph_is_kept_until_a_model_changes,
        lineage_rejects_self_and_future_parents,
        compare_reports_every_difference,
        metric_history_in_version_order,
        builder_errors_are_reported_by_the_command,
        records_are_references,
        provenance_builders_record_everything,
        register_reports_what_it_stored,
        ensure_model_is_race_free,
        versions_page_in_order,
        model_summaries_list_every_model,
        not_found_says_what_is_missing,
        register_reports_progress_for_every_file,
        fetch_and_verify_report_progress_for_every_file,
        check_reports_progress_for_every_blob,
        gc_reports_progress_for_every_manifest,
        a_large_file_reports_bytes_while_it_moves,
        dropped_fetch_leaves_nothing_behind,
    ],
    lifecycle: [
        stage_references_resolve,
        promotion_archives_the_previous_production_version,
        transition_events_record_everything,
        metrics_no_worse_against_production,
        metrics_no_worse_against_an_alias,
        approvals_gate,
        provenance_and_time_in_stage_gates,
        every_failed_gate_is_reported,
        stored_gates_apply_to_every_registry,
        in_process_gates_run_and_refuse,
        check_transition_and_check_gates_judge_without_recording,
        invalid_gate_specs_are_rejected,
        in_process_min_time_in_stage_beyond_range_refuses,
        approvals_are_events,
        rollback_walks_production_back,
        rollback_never_restores_the_current_version,
        aliases_set_move_and_remove,
        protected_aliases_pass_production_gates,
        abandoned_command_blocks_no_writer,
        gates_judge_the_state_the_event_follows,
        lifecycle_events_are_format_2,
        promote_to_walks_the_path_and_stops_at_a_refusing_gate,
        format_policy_gate_decides_from_recorded_scans,
        production_versions_are_immutable_except_by_override,
        version_descriptions_are_editable_until_production,
        // tests/common/signing_suite.rs
        signing_records_audited_signatures_that_verify,
        external_bundles_attach_only_when_they_match,
        signed_gate_counts_distinct_accepted_keys,
        fetch_with_a_trust_policy_hands_out_only_signed_versions,
        model_cache_with_a_trust_policy_hands_out_only_signed_versions,
    ],
    // tests/common/serving_suite.rs
    serving: [
        watch_follows_promotions_and_rollbacks,
        watch_follows_an_alias,
        watch_reports_a_reference_that_stops_resolving,
        traffic_split_is_an_audited_event,
        route_is_sticky_and_follows_the_weights,
        route_without_split_falls_back_to_production,
        watch_and_route_agree_after_an_alias_move,
        abandoned_watch_poll_blocks_no_writer,
        watch_model_sees_every_change_including_splits,
        follow_swaps_files_and_states_on_change,
        serve_loads_every_routed_version_once,
        serve_reports_a_loader_error_at_start,
    ],
    // tests/common/retention_suite.rs
    retention: [
        purge_keeps_the_record_and_refuses_the_files,
        protected_versions_are_never_purged,
        purged_versions_cannot_come_back_into_use,
        retention_policy_purges_only_what_it_picks,
        gc_reclaims_what_only_purged_versions_used,
        gc_reclaims_the_space_of_purged_fine_tunes,
    ],
}

/// Instantiates each `suite::test` listed in a module `metadata::<backend>`.
macro_rules! metadata_suite {
    (
        backends: [$($(#[$attr:meta])* $backend:ident),* $(,)?],
        tests: $tests:tt $(,)?
    ) => {
        mod metadata {
            $( metadata_for_backend!([$(#[$attr])*] $backend, $tests); )*
        }
    };
}

/// The tests of [`metadata_suite`] for one backend, in a module named after it.
macro_rules! metadata_for_backend {
    ($attrs:tt $backend:ident, [$($suite:ident :: $test:ident),* $(,)?]) => {
        mod $backend {
            $(
                backend_test!(
                    $attrs $test,
                    super::super::Fixture::$backend,
                    super::super::$suite::$test
                );
            )*
        }
    };
}

metadata_suite! {
    // A `_packed` backend differs from its plain one in the artifact store
    // alone (same metadata store, same URL scheme): these tests exercise the
    // metadata store — the log at scale, checkpoints and their parts, event
    // archives, time travel, racing commands — so they run once per metadata
    // store. On the object-storage servers each is thousands of requests;
    // twice would be minutes of CI for no extra signal.
    backends: [
        memory, memory_checkpoints, dyn_memory, local, dyn_local,
        object_memory, object_local,
        #[cfg_attr(not(modelreg_s3), ignore = "needs MODELREG_TEST_S3_URL and the aws feature (tests/common/servers.rs)")]
        s3,
        #[cfg_attr(not(modelreg_azure), ignore = "needs MODELREG_TEST_AZURE_URL and the azure feature (tests/common/servers.rs)")]
        azure,
    ],
    tests: [
        registry_suite::checkpoints_fold_to_the_same_state,
        registry_suite::segmented_checkpoints_fold_travel_and_survive_damage,
        registry_suite::history_reads_tail_archives_and_records_alike,
        registry_suite::patched_checkpoints_fold_and_survive_damage,
        registry_suite::checkpoint_parts_gc_keeps_what_kept_heads_name,
        registry_suite::checkpoint_parts_gc_deletes_nothing_when_a_head_is_undecodable,
        lifecycle_suite::time_travel_resolves_as_of,
        lifecycle_suite::time_travel_from_older_checkpoints_is_the_full_fold,
        lifecycle_suite::concurrent_promotions_never_make_two_productions,
        lifecycle_suite::transition_table_is_enforced,
        lifecycle_suite::history_tail_agrees_with_a_full_read,
        lifecycle_suite::racing_commands_have_one_winner,
        lifecycle_suite::lifecycle_state_survives_checkpoints,
        lifecycle_suite::history_pages_cover_the_trail_newest_first,
        lifecycle_suite::history_is_newest_first_and_filters,
    ],
}
