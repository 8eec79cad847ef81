//! The process-wide flusher with `HDPFLUSH_STRATEGY=sim`: the simulator, chosen once. (A file
//! of its own: the environment must be set before the first use in the process.)

#[test]
fn the_named_simulator_is_the_process_wide_flusher_and_is_chosen_once() {
    std::env::set_var("HDPFLUSH_STRATEGY", "sim");
    std::env::remove_var("HDPFLUSH_GPU");
    let (a, selection) = libflush::global_selection().unwrap();
    assert_eq!(a.kind(), libflush::StrategyKind::Sim);
    assert_eq!(a.backing().kind, libflush::BackingKind::Simulator);
    assert!(
        selection.reason.contains("HDPFLUSH_STRATEGY=sim"),
        "{}",
        selection.reason
    );
    a.flush().unwrap();
    a.invalidate().unwrap();
    // Changing the environment afterwards changes nothing: the choice is made once.
    std::env::set_var("HDPFLUSH_STRATEGY", "ioctl");
    let b = libflush::global().unwrap();
    assert!(std::ptr::addr_eq(a, b), "the same flusher");
}
