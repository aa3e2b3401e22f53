use super::*;

fn file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fairway-token-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write token");
    path
}

#[test]
fn the_token_file_becomes_a_sensitive_bearer_value() {
    let path = file("token", b"eyJhbGciOi.abc.def\n");
    let value = authorization(&path).expect("a token");
    assert_eq!(
        value.to_str().expect("ascii"),
        "Bearer eyJhbGciOi.abc.def",
        "trailing newline trimmed"
    );
    assert!(value.is_sensitive(), "never printed by Debug or logs");
    std::fs::write(&path, b"rotated").expect("rotate");
    assert_eq!(
        authorization(&path).expect("a token").to_str().ok(),
        Some("Bearer rotated"),
        "read again on every call, so rotation needs no restart"
    );
}

#[test]
fn missing_empty_or_binary_tokens_are_errors() {
    let missing = std::env::temp_dir().join("fairway-no-such-token");
    assert!(matches!(
        authorization(&missing),
        Err(SessionError::ReadFile { .. })
    ));
    for bad in [&b""[..], b"  \n", b"\xff\xfe", b"a\x01b"] {
        let path = file("bad", bad);
        assert!(
            matches!(authorization(&path), Err(SessionError::BadToken(_))),
            "{bad:?} is refused"
        );
    }
}
