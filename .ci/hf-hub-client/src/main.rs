//! `hf-hub-client snapshot REPO REVISION DIR` or `hf-hub-client file REPO
//! REVISION FILENAME`: downloads through the real `hf-hub` crate from
//! `HF_ENDPOINT` and prints each local path, one per line.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = run(&args) {
        eprintln!("hf-hub-client: {e:?}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let client = hf_hub::HFClientSync::new()?;
    match args.get(1..).unwrap_or_default() {
        [cmd, repo, revision, dir] if cmd == "snapshot" => {
            let path = client
                .model("", repo)
                .snapshot_download()
                .revision(revision.as_str())
                .local_dir(std::path::PathBuf::from(dir))
                .send()?;
            println!("{}", path.display());
        }
        [cmd, repo, revision, file] if cmd == "file" => {
            let path = client
                .model("", repo)
                .download_file()
                .filename(file.as_str())
                .revision(revision.as_str())
                .send()?;
            println!("{}", path.display());
        }
        _ => return Err("usage: hf-hub-client snapshot|file REPO REVISION DIR|FILENAME".into()),
    }
    Ok(())
}
