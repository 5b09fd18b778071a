//! Images: there are no container images on the single host, so an image name resolves to
//! a command. `switchyard/demo:TAG` (and Argo's `argoproj/rollouts-demo:TAG`) run the
//! built-in demo app; anything else needs an entry in the server's image map.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// What an image runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// The executable and its leading arguments (the image's ENTRYPOINT).
    #[serde(default)]
    pub command: Vec<String>,
    /// Default arguments (the image's CMD).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment added before the container's own `env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// The image map of the server's config file: `image` (with or without tag) -> command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ImageMap(pub BTreeMap<String, ImageEntry>);

/// How a container's image resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Run this program.
    Program {
        /// Executable.
        program: PathBuf,
        /// Arguments after it.
        args: Vec<String>,
        /// Environment from the image.
        env: BTreeMap<String, String>,
    },
    /// No mapping: the container waits with reason `ImageNotMapped`.
    NotMapped,
}

/// Repositories that run the built-in demo app, with the tag as its version.
const DEMO_REPOSITORIES: &[&str] = &["switchyard/demo", "argoproj/rollouts-demo"];

/// Splits `registry/repo:tag` into repository and tag (no tag: `latest`), ignoring digests.
pub fn split_image(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        // A colon before the last slash belongs to a registry port.
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

impl ImageMap {
    /// Resolves a container's image, command and args the way a container runtime
    /// combines ENTRYPOINT/CMD with the pod's `command`/`args`: `command` replaces the
    /// entrypoint (and drops the image's args), `args` replaces the image's args.
    pub fn resolve(
        &self,
        image: &str,
        command: Option<&[String]>,
        args: Option<&[String]>,
        self_exe: &std::path::Path,
    ) -> Resolved {
        let (repo, tag) = split_image(image);
        let entry = if DEMO_REPOSITORIES.iter().any(|d| repo.ends_with(d)) {
            ImageEntry {
                command: vec![
                    self_exe.display().to_string(),
                    "demo-app".into(),
                    "--version".into(),
                    tag.to_string(),
                ],
                ..ImageEntry::default()
            }
        } else {
            match self.0.get(image).or_else(|| self.0.get(repo)) {
                Some(entry) => entry.clone(),
                None if command.is_some_and(|c| !c.is_empty()) => ImageEntry::default(),
                None => return Resolved::NotMapped,
            }
        };
        let (entrypoint, default_args) = match command.filter(|c| !c.is_empty()) {
            Some(command) => (command.to_vec(), Vec::new()),
            None => (entry.command.clone(), entry.args.clone()),
        };
        let args = match args {
            Some(args) => args.to_vec(),
            None => default_args,
        };
        let mut argv = entrypoint.into_iter().chain(args);
        match argv.next() {
            Some(program) => Resolved::Program {
                program: PathBuf::from(program),
                args: argv.collect(),
                env: entry.env,
            },
            None => Resolved::NotMapped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn split_image_handles_tags_registries_and_digests() {
        let cases = [
            ("switchyard/demo:blue", ("switchyard/demo", "blue")),
            ("nginx", ("nginx", "latest")),
            ("localhost:5000/app", ("localhost:5000/app", "latest")),
            ("localhost:5000/app:v2", ("localhost:5000/app", "v2")),
            ("app@sha256:abc", ("app", "latest")),
        ];
        for (image, expected) in cases {
            assert_eq!(split_image(image), expected, "{image}");
        }
    }

    #[test]
    fn resolution_follows_entrypoint_and_cmd_rules() {
        let mut map = ImageMap::default();
        map.0.insert(
            "web".into(),
            ImageEntry {
                command: strings(&["/usr/bin/web", "--serve"]),
                args: strings(&["--port", "80"]),
                env: BTreeMap::from([("MODE".into(), "prod".into())]),
            },
        );
        let exe = Path::new("/bin/switchyard");
        let program = |p: &str, a: &[&str]| Resolved::Program {
            program: PathBuf::from(p),
            args: strings(a),
            env: BTreeMap::from([("MODE".into(), "prod".into())]),
        };
        assert_eq!(
            map.resolve("web:1.0", None, None, exe),
            program("/usr/bin/web", &["--serve", "--port", "80"])
        );
        let args = strings(&["--port", "8080"]);
        assert_eq!(
            map.resolve("web", None, Some(&args), exe),
            program("/usr/bin/web", &["--serve", "--port", "8080"])
        );
        let command = strings(&["/bin/sleep", "5"]);
        assert_eq!(
            map.resolve("web", Some(&command), None, exe),
            program("/bin/sleep", &["5"])
        );
        assert_eq!(
            map.resolve("unknown:1", None, None, exe),
            Resolved::NotMapped
        );
        assert!(matches!(
            map.resolve("unknown:1", Some(&command), None, exe),
            Resolved::Program { .. }
        ));
        match map.resolve("argoproj/rollouts-demo:green", None, None, exe) {
            Resolved::Program { program, args, .. } => {
                assert_eq!(program, exe);
                assert_eq!(args, strings(&["demo-app", "--version", "green"]));
            }
            other => panic!("{other:?}"),
        }
    }
}
