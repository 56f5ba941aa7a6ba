//! halo's own agents (agents/ocf/halo/httpd, agents/fence/fence_sandbox) checked on their
//! own, without halo, by agents/tests/run.sh (an ocf-tester-like run, fencing a fake sandbox).

#[test]
fn shipped_agents_pass_their_checks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash").arg(root.join("agents/tests/run.sh")).current_dir(&root).output().expect("bash runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "agents/tests/run.sh failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("0 failed"), "{text}");
}
