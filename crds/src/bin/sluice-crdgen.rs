//! Writes the CRD YAML generated from the API types into `charts/sluice/files/crds/`
//! (or the folder given as the first argument).

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(sluice_crds::generate::default_output_dir);
    for path in sluice_crds::generate::write_crd_files(&dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
