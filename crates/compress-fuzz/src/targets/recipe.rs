//! `recipe`: recipe TOML through [`Recipe::from_file`], then what `compress run --check` runs
//! ([`recipe::check`]: every stage's settings into its run config) and the resume keys.

use compress_core::recipe::{self, state::stage_keys, Recipe, StageDefaults};

use super::{demo_model, repo_path, Kind, Target};

/// The recipe parser and checker.
pub struct RecipeTarget {
    dir: tempfile::TempDir,
    defaults: StageDefaults,
}

impl RecipeTarget {
    /// A scratch tree shaped like the repo (`recipes/`, the demo model's config, small data
    /// files), so the repo's recipes resolve their relative paths in it.
    pub fn new() -> Self {
        let dir = super::scratch_dir();
        let root = dir.path();
        let model = root.join("examples/models/demo");
        let corpus = root.join("examples/data/corpus");
        for d in [&model, &corpus, &root.join("recipes")] {
            std::fs::create_dir_all(d).expect("creating the scratch tree");
        }
        std::fs::copy(demo_model().join("config.json"), model.join("config.json"))
            .expect("copying the demo config");
        for f in ["train.txt", "valid.txt"] {
            std::fs::write(corpus.join(f), "some text to train on.\n").expect("data file");
        }
        Self {
            dir,
            defaults: StageDefaults {
                device: "cpu".into(),
                seed: 0,
            },
        }
    }
}

impl Default for RecipeTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for RecipeTarget {
    fn name(&self) -> &'static str {
        "recipe"
    }

    fn kind(&self) -> Kind {
        Kind::Toml
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<_> = std::fs::read_dir(repo_path("recipes"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.retain(|p| p.extension().is_some_and(|e| e == "toml"));
        paths.sort();
        paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
    }

    fn alloc_limit(&self, input: &[u8]) -> usize {
        super::tree_limit(input.len())
    }

    fn run_one(&mut self, input: &[u8]) -> bool {
        let path = self.dir.path().join("recipes/case.toml");
        std::fs::write(&path, input).expect("writing the case");
        let Ok(r) = Recipe::from_file(&path) else {
            return false;
        };
        let _ = (r.stages.len(), recipe::final_dir(&r));
        recipe::check(&r, &self.defaults).is_ok() && stage_keys(&r).is_ok()
    }
}
