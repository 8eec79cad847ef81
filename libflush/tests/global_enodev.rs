//! The process-wide flusher for a GPU that cannot be flushed: ENODEV with the reason, the same
//! every time, never the simulator. (A file of its own: the environment must be set before the
//! first use in the process.)

#[test]
fn a_gpu_without_a_flush_path_gives_the_same_enodev_every_time() {
    std::env::remove_var("HDPFLUSH_STRATEGY");
    // A module device index far past anything a module serves: not found whether or not the
    // module is loaded here.
    std::env::set_var("HDPFLUSH_GPU", "index:4000");
    let first = libflush::global().map(|f| f.kind()).unwrap_err();
    assert_eq!(first.errno(), nix::errno::Errno::ENODEV, "{first}");
    assert!(first.to_string().contains("index:4000"), "{first}");
    // Fixing the environment afterwards changes nothing: the choice is made once.
    std::env::set_var("HDPFLUSH_STRATEGY", "sim");
    let second = libflush::global().map(|f| f.kind()).unwrap_err();
    assert_eq!(first, second);
}
