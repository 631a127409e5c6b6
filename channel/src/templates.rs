//! Localised templates a merchant can override: built-in sources named `<locale>/<part>`
//! (`nb/subject.txt`), each replaced by the file of the same relative name under the merchant's
//! templates directory when one is there.

use std::path::Path;

use minijinja::Environment;

/// The template engine [`add_localised`] fills, for a channel's own rendering.
pub use minijinja;

/// Locales with built-in texts: Norwegian Bokmål, Swedish, Finnish, English.
pub const LOCALES: [&str; 4] = ["nb", "sv", "fi", "en"];

/// Adds every `(name, built-in source)` of `builtins` to `env`, reading `<dir>/<name>` instead
/// where that file exists (a name without an extension is read from `<dir>/<name>.html`, so a
/// layout named `layout` is overridden by `layout.html`). Configure `env` (undefined behaviour, auto-escaping) before: a
/// template is compiled as it is added.
///
/// ```
/// let mut env = minijinja::Environment::new();
/// postbud_channel::templates::add_localised(
///     &mut env,
///     None,
///     [("en/sms.txt".to_owned(), "Invoice {{ number }}")],
/// )
/// .unwrap();
/// let text = env.get_template("en/sms.txt").unwrap().render(minijinja::context! { number => "A-1" }).unwrap();
/// assert_eq!(text, "Invoice A-1");
/// ```
///
/// # Errors
///
/// `dir` is not a directory, a file cannot be read, or a template does not compile; the message
/// names the directory, file or template.
pub fn add_localised<'s>(
    env: &mut Environment<'static>,
    dir: Option<&Path>,
    builtins: impl IntoIterator<Item = (String, &'s str)>,
) -> Result<(), String> {
    if let Some(dir) = dir
        && !dir.is_dir()
    {
        return Err(format!(
            "templates directory `{}` does not exist",
            dir.display()
        ));
    }
    for (name, builtin) in builtins {
        let file_name = if name.contains('.') {
            name.clone()
        } else {
            format!("{name}.html")
        };
        let file = dir.map(|d| d.join(&file_name)).filter(|f| f.is_file());
        let source = match file {
            Some(path) => std::fs::read_to_string(&path)
                .map_err(|e| format!("template `{}`: {e}", path.display()))?,
            None => builtin.to_owned(),
        };
        env.add_template_owned(name.clone(), source)
            .map_err(|e| format!("template `{name}`: {e:#}"))?;
    }
    Ok(())
}
