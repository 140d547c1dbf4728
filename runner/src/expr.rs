//! jq expressions (via the jaq crates): compiling `if`, `forEach`,
//! `transform.jq`, `spec.output` and `${{ }}` templates once, and running
//! them against the run context `{input, nodes, item, index, run, env}`.
//!
//! Compilation happens at validation time; the engine only runs compiled
//! [`Program`]s. Nothing here knows about nodes or scheduling. The jq
//! builtins that read the process (`env`, `input`) are left out so
//! an expression cannot read the runner's environment.

mod convert;
mod template;

pub use convert::{json_to_val, val_to_json};
pub use template::{FieldKind, Segment, Template, TemplateError, TemplateErrorKind};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data};
use jaq_json::Val;
use std::fmt;
use std::sync::{Arc, OnceLock};

type Data = data::JustLut<Val>;
type Filter = jaq_core::compile::Filter<jaq_core::Native<Data>>;

/// Builtins an expression may not call: they read the runner process.
const FORBIDDEN: [&str; 3] = ["env", "input", "inputs"];

/// Name of the global variable selecting a program in a linked set.
const SELECTOR: &str = "$__sluice_program";

/// A compiled jq program with its source text.
#[derive(Clone)]
pub struct Program {
    source: Arc<str>,
    code: Code,
}

#[derive(Clone)]
enum Code {
    /// Compiled on its own.
    Alone(Arc<Filter>),
    /// Part of a [`ProgramSet`], selected by number once the set is linked.
    Linked {
        filter: Arc<OnceLock<Filter>>,
        selector: usize,
    },
}

/// Many programs compiled in one jaq compilation, so the standard library
/// is parsed and compiled once per workflow rather than once per
/// expression. [`ProgramSet::add`] checks syntax (with positions) at once;
/// [`ProgramSet::link`] compiles them all together.
pub struct ProgramSet {
    batch: bool,
    sources: Vec<Arc<str>>,
    filter: Arc<OnceLock<Filter>>,
}

impl ProgramSet {
    /// A set compiled together by [`ProgramSet::link`].
    pub fn batch() -> Self {
        Self {
            batch: true,
            sources: Vec::new(),
            filter: Arc::default(),
        }
    }

    /// A "set" compiling each program on its own at once: slower, but every
    /// error (including undefined filters) is attributed to its program.
    pub fn immediate() -> Self {
        Self {
            batch: false,
            ..Self::batch()
        }
    }

    /// Adds a program; reports its syntax errors (immediate sets: every error).
    pub fn add(&mut self, source: &str) -> Result<Program, CompileError> {
        if !self.batch {
            return Program::compile(source);
        }
        check_syntax(source)?;
        self.sources.push(source.into());
        Ok(Program {
            source: source.into(),
            code: Code::Linked {
                filter: self.filter.clone(),
                selector: self.sources.len() - 1,
            },
        })
    }

    /// Compiles every added program together. Fails when any program uses
    /// an undefined filter or variable; compile the workflow again with an
    /// [`ProgramSet::immediate`] set to find which.
    pub fn link(self) -> Result<(), CompileError> {
        if !self.batch || self.sources.is_empty() {
            return Ok(());
        }
        let combined = dispatch(&self.sources, 0, self.sources.len());
        let filter = compile_filter(&combined, &[SELECTOR])?;
        let _ = self.filter.set(filter);
        Ok(())
    }
}

/// `if $selector < mid then … else … end`, a balanced tree over the programs.
fn dispatch(sources: &[Arc<str>], low: usize, high: usize) -> String {
    if high - low == 1 {
        // Newlines keep a trailing `# comment` from swallowing the parenthesis.
        return format!("(\n{}\n)", sources[low]);
    }
    let middle = low + (high - low) / 2;
    format!(
        "if {SELECTOR} < {middle} then {} else {} end",
        dispatch(sources, low, middle),
        dispatch(sources, middle, high)
    )
}

fn check_syntax(source: &str) -> Result<(), CompileError> {
    let loader = Loader::new([]);
    let arena = Arena::default();
    let file = File {
        code: source,
        path: (),
    };
    loader
        .load(&arena, file)
        .map(|_| ())
        .map_err(|errors| load_error(source, errors))
}

fn compile_filter(source: &str, globals: &[&'static str]) -> Result<Filter, CompileError> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>())
        .filter(|(name, _, _)| !FORBIDDEN.contains(name));
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let file = File {
        code: source,
        path: (),
    };
    let modules = loader
        .load(&arena, file)
        .map_err(|errors| load_error(source, errors))?;
    Compiler::default()
        .with_funs(funs)
        .with_global_vars(globals.iter().copied())
        .compile(modules)
        .map_err(|errors| {
            let (part, undefined) = errors
                .into_iter()
                .flat_map(|(_, errs)| errs)
                .next()
                .map(|(part, undefined)| (part, undefined.as_str()))
                .unwrap_or(("", "symbol"));
            error_at(source, part, format!("undefined {undefined} `{part}`"))
        })
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Program").field(&self.source).finish()
    }
}

/// A jq program that does not compile, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at {line}:{column}")]
pub struct CompileError {
    /// What is wrong.
    pub message: String,
    /// 1-based line in the expression.
    pub line: usize,
    /// 1-based column (in characters) in the expression.
    pub column: usize,
}

/// A jq program that failed while running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to evaluate {program:?}: {message}")]
pub struct EvalError {
    /// The program's source.
    pub program: String,
    /// The jq error.
    pub message: String,
}

impl Program {
    /// Compiles `source` on its own.
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        Ok(Self {
            source: source.into(),
            code: Code::Alone(Arc::new(compile_filter(source, &[])?)),
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program on `input` and returns its first result (`null`
    /// when it yields nothing).
    pub fn first(&self, input: Val) -> Result<Val, EvalError> {
        let (filter, vars) = match &self.code {
            Code::Alone(filter) => (filter.as_ref(), Vars::new([])),
            Code::Linked { filter, selector } => match filter.get() {
                Some(filter) => (filter, Vars::new([Val::from(*selector)])),
                None => {
                    return Err(EvalError {
                        program: self.source.to_string(),
                        message: "the program was never linked".into(),
                    });
                }
            },
        };
        let ctx = Ctx::<Data>::new(&filter.lut, vars);
        let mut outputs = filter.id.run((ctx, input)).map(jaq_core::unwrap_valr);
        match outputs.next() {
            None => Ok(Val::Null),
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(EvalError {
                program: self.source.to_string(),
                message: error.to_string(),
            }),
        }
    }

    /// Runs the program and converts its first result to JSON.
    pub fn first_json(&self, input: Val) -> Result<serde_json::Value, EvalError> {
        self.first(input).map(|value| val_to_json(&value))
    }

    /// Runs the program as a condition: true unless its first result is
    /// `null` or `false` (jq truthiness).
    pub fn truthy(&self, input: Val) -> Result<bool, EvalError> {
        Ok(!matches!(self.first(input)?, Val::Null | Val::Bool(false)))
    }
}

fn load_error(source: &str, errors: jaq_core::load::Errors<&str, ()>) -> CompileError {
    use jaq_core::load::Error;
    for (_, error) in errors {
        match error {
            Error::Lex(errs) => {
                if let Some((expect, part)) = errs.first() {
                    return error_at(source, part, format!("expected {}", expect.as_str()));
                }
            }
            Error::Parse(errs) => {
                if let Some((expect, part)) = errs.first() {
                    let found = if part.is_empty() {
                        "end of expression".to_owned()
                    } else {
                        format!("`{}`", first_token(part))
                    };
                    return error_at(
                        source,
                        part,
                        format!("expected {} but found {found}", expect.as_str()),
                    );
                }
            }
            Error::Io(errs) => {
                if let Some((part, message)) = errs.first() {
                    return error_at(source, part, format!("cannot import: {message}"));
                }
            }
        }
    }
    error_at(source, "", "invalid jq expression".to_owned())
}

fn first_token(part: &str) -> &str {
    let end = part
        .char_indices()
        .skip(1)
        .find(|(_, c)| c.is_whitespace())
        .map_or(part.len(), |(i, _)| i);
    &part[..end.min(40)]
}

/// Builds an error positioned at `part`, a slice of `source` (or of the
/// standard library, in which case the position is the end of `source`).
fn error_at(source: &str, part: &str, message: String) -> CompileError {
    let start = source.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    let offset = if at >= start && at <= start + source.len() {
        at - start
    } else {
        source.len()
    };
    let (line, column) = line_column(source, offset);
    CompileError {
        message,
        line,
        column,
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Names of nodes an expression reads literally: `.nodes.X`, `.nodes["X"]`
/// and `.nodes."X"`. Used to check that expressions only read upstream nodes.
pub fn referenced_nodes(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".nodes") {
        let after = &rest[at + ".nodes".len()..];
        rest = after;
        let after = after.trim_start();
        let name = if let Some(field) = after.strip_prefix('.') {
            let field = field.trim_start();
            if let Some(quoted) = field.strip_prefix('"') {
                quoted.split('"').next().map(str::to_owned)
            } else {
                let ident: String = field
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                (!ident.is_empty()).then_some(ident)
            }
        } else if let Some(index) = after.strip_prefix('[') {
            index
                .trim_start()
                .strip_prefix('"')
                .and_then(|quoted| quoted.split('"').next())
                .map(str::to_owned)
        } else {
            None
        };
        if let Some(name) = name
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(source: &str, input: serde_json::Value) -> serde_json::Value {
        Program::compile(source)
            .unwrap()
            .first_json(json_to_val(&input))
            .unwrap()
    }

    #[test]
    fn programs_run_with_the_standard_library() {
        assert_eq!(
            eval(
                "[.a[] | select(. > 1)] | map(. * 2)",
                json!({"a": [1, 2, 3]})
            ),
            json!([4, 6])
        );
        assert_eq!(eval(".x | ascii_upcase", json!({"x": "ab"})), json!("AB"));
        assert_eq!(eval("empty", json!(1)), json!(null));
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let error = Program::compile(".a | ").unwrap_err();
        assert_eq!((error.line, error.column), (1, 6), "{error}");
        let error = Program::compile("{a: 1,,}").unwrap_err();
        assert_eq!(error.column, 7, "{error}");
    }

    #[test]
    fn undefined_filters_are_named() {
        let error = Program::compile(".a | frobnicate").unwrap_err();
        assert!(error.message.contains("frobnicate"), "{error}");
        assert_eq!(error.column, 6);
    }

    #[test]
    fn the_process_environment_is_not_readable() {
        assert!(Program::compile("env").is_err());
        assert!(Program::compile("$ENV").is_err());
    }

    #[test]
    fn runtime_errors_name_the_program() {
        let program = Program::compile(".a + 1").unwrap();
        let error = program.first(json_to_val(&json!({"a": "x"}))).unwrap_err();
        assert!(error.to_string().contains(".a + 1"), "{error}");
    }

    #[test]
    fn truthiness_follows_jq() {
        let program = Program::compile(".v").unwrap();
        for (value, expected) in [
            (json!(null), false),
            (json!(false), false),
            (json!(0), true),
            (json!(""), true),
        ] {
            assert_eq!(
                program.truthy(json_to_val(&json!({ "v": value }))).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn programs_linked_in_a_set_each_run_their_own_code() {
        let mut set = ProgramSet::batch();
        let programs: Vec<Program> = (0..7)
            .map(|n| set.add(&format!(".x + {n} # comment")).unwrap())
            .collect();
        assert!(set.add(".x |").is_err(), "syntax is checked at once");
        set.link().unwrap();
        for (n, program) in programs.iter().enumerate() {
            assert_eq!(
                program.first_json(json_to_val(&json!({"x": 10}))).unwrap(),
                json!(10 + n)
            );
        }
        let mut undefined = ProgramSet::batch();
        undefined.add("nosuchfilter").unwrap();
        assert!(
            undefined
                .link()
                .unwrap_err()
                .message
                .contains("nosuchfilter")
        );
    }

    #[test]
    fn referenced_nodes_finds_literal_paths() {
        assert_eq!(
            referenced_nodes(r#".nodes.a.output + .nodes["b-c"].output | .nodes . "d" | .nodes"#),
            vec!["a", "b-c", "d"]
        );
    }
}
