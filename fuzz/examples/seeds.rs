//! Writes the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

fn main() -> std::io::Result<()> {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    fairway_fuzz::seeds::write(&corpus)?;
    println!("seeds written under {}", corpus.display());
    Ok(())
}
