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

use jaq_core::load::parse::{BinaryOp, Def, Term};
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::ops::Cmp;
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
/// is compiled once per workflow rather than once per expression.
///
/// Three modes:
/// - [`ProgramSet::batch`] only stores the sources; [`ProgramSet::link`]
///   parses each one once and compiles them all together. The fast path
///   for a workflow that is valid; when linking fails, validate again
///   with a [`ProgramSet::checked`] set to learn what is wrong where.
/// - [`ProgramSet::checked`] also checks each program's syntax (with its
///   position) when it is added.
/// - [`ProgramSet::immediate`] compiles each program on its own at once:
///   slower, but every error (including undefined filters) is attributed
///   to its program.
pub struct ProgramSet {
    mode: Mode,
    sources: Vec<Arc<str>>,
    filter: Arc<OnceLock<Filter>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Batch,
    Checked,
    Immediate,
}

impl ProgramSet {
    /// A set compiled together by [`ProgramSet::link`], checked only then.
    pub fn batch() -> Self {
        Self {
            mode: Mode::Batch,
            sources: Vec::new(),
            filter: Arc::default(),
        }
    }

    /// A set compiled together by [`ProgramSet::link`], whose programs'
    /// syntax is checked as they are added.
    pub fn checked() -> Self {
        Self {
            mode: Mode::Checked,
            ..Self::batch()
        }
    }

    /// A "set" compiling each program on its own at once.
    pub fn immediate() -> Self {
        Self {
            mode: Mode::Immediate,
            ..Self::batch()
        }
    }

    /// Adds a program; reports its syntax errors in checked sets and every
    /// error in immediate ones.
    pub fn add(&mut self, source: &str) -> Result<Program, CompileError> {
        match self.mode {
            Mode::Immediate => return Program::compile(source),
            Mode::Checked => check_syntax(source)?,
            Mode::Batch => {}
        }
        self.sources.push(source.into());
        Ok(Program {
            source: source.into(),
            code: Code::Linked {
                filter: self.filter.clone(),
                selector: self.sources.len() - 1,
            },
        })
    }

    /// Compiles every added program together. Fails when any program does
    /// not parse or uses an undefined filter or variable.
    ///
    /// Each program is parsed once, on its own, and becomes a branch of
    /// `if $selector < middle then … else … end`, a balanced tree built
    /// as syntax rather than text: no program's text can reach into
    /// another's, and nothing is parsed twice.
    pub fn link(self) -> Result<(), CompileError> {
        if self.mode == Mode::Immediate || self.sources.is_empty() {
            return Ok(());
        }
        let mut terms = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            match load::parse(source, |parser| parser.term()) {
                Some(term) => terms.push(term),
                None => {
                    return Err(check_syntax(source).err().unwrap_or_else(|| {
                        error_at(source, "", "expected an expression".to_owned())
                    }));
                }
            }
        }
        let bounds: Vec<String> = (0..terms.len()).map(|index| index.to_string()).collect();
        let mut terms: Vec<Option<Term<&str>>> = terms.into_iter().map(Some).collect();
        let body = dispatch(&mut terms, &bounds, 0);
        let program = Def {
            name: DISPATCH,
            args: Vec::new(),
            body,
        };
        let sources: Vec<&str> = self.sources.iter().map(|source| &**source).collect();
        let filter = compile_with_prelude([program], DISPATCH, &[SELECTOR], &sources)?;
        let _ = self.filter.set(filter);
        Ok(())
    }
}

/// Name of the definition holding a linked set's programs.
const DISPATCH: &str = "__sluice_programs";

/// `if $selector < middle then … else … end` over `terms`, whose first
/// element has selector `offset`: a balanced tree of depth log2(n).
fn dispatch<'s>(
    terms: &mut [Option<Term<&'s str>>],
    bounds: &'s [String],
    offset: usize,
) -> Term<&'s str> {
    if terms.len() == 1 {
        return terms[0].take().unwrap_or_default();
    }
    let middle = terms.len() / 2;
    let (low, high) = terms.split_at_mut(middle);
    let condition = Term::BinOp(
        Box::new(Term::Var(SELECTOR)),
        BinaryOp::Cmp(Cmp::Lt),
        Box::new(Term::Num(bounds[offset + middle].as_str())),
    );
    let then = dispatch(low, bounds, offset);
    let otherwise = dispatch(high, bounds, offset + middle);
    Term::IfThenElse(vec![(condition, then)], Some(Box::new(otherwise)))
}

/// Whether `part` is a slice of `whole`.
fn contains(whole: &str, part: &str) -> bool {
    let (start, at) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    at >= start && at + part.len() <= start + whole.len()
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

/// The definitions of jq's standard library, parsed once per process.
fn standard_definitions() -> &'static [Def<&'static str>] {
    static DEFINITIONS: OnceLock<Vec<Def<&'static str>>> = OnceLock::new();
    DEFINITIONS.get_or_init(|| {
        jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .collect()
    })
}

/// Compiles `main` with the standard library and `definitions` in scope.
/// An error is positioned in whichever of `sources` (or `main`) holds the
/// part it is about.
fn compile_with_prelude<'s>(
    definitions: impl IntoIterator<Item = Def<&'s str>>,
    main: &'s str,
    globals: &[&'static str],
    sources: &[&str],
) -> Result<Filter, CompileError> {
    let funs = jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>())
        .filter(|(name, _, _)| !FORBIDDEN.contains(name));
    let loader = Loader::new(standard_definitions().iter().cloned().chain(definitions));
    let arena = Arena::default();
    let file = File {
        code: main,
        path: (),
    };
    let modules = loader
        .load(&arena, file)
        .map_err(|errors| load_error(main, errors))?;
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
            let source = sources
                .iter()
                .copied()
                .find(|source| contains(source, part))
                .unwrap_or(main);
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
            code: Code::Alone(Arc::new(compile_with_prelude([], source, &[], &[source])?)),
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
        set.link().unwrap();
        for (n, program) in programs.iter().enumerate() {
            assert_eq!(
                program.first_json(json_to_val(&json!({"x": 10}))).unwrap(),
                json!(10 + n)
            );
        }
        let mut checked = ProgramSet::checked();
        assert!(
            checked.add(".x |").is_err(),
            "checked sets check syntax at once"
        );
        let mut late = ProgramSet::batch();
        late.add(".x").unwrap();
        late.add(".x |").unwrap();
        let error = late.link().unwrap_err();
        assert_eq!((error.line, error.column), (1, 5), "{error}");
        let mut undefined = ProgramSet::batch();
        undefined.add("nosuchfilter").unwrap();
        undefined.add(".a | .b").unwrap();
        undefined.add(".a | alsomissing").unwrap();
        let error = undefined.link().unwrap_err();
        assert!(error.message.contains("nosuchfilter"), "{error}");
        assert_eq!((error.line, error.column), (1, 1), "{error}");
        let mut undefined = ProgramSet::batch();
        undefined.add(".a").unwrap();
        undefined.add(".a | alsomissing").unwrap();
        let error = undefined.link().unwrap_err();
        assert!(error.message.contains("alsomissing"), "{error}");
        assert_eq!(error.column, 6, "positioned in its own program: {error}");
    }

    #[test]
    fn a_linked_program_cannot_reach_into_the_next_one() {
        let mut set = ProgramSet::batch();
        // As text, the backslash would continue the comment over the
        // following program; each program is parsed on its own instead.
        let first = set.add(".x + 1 # ends in a backslash \\").unwrap();
        let second = set.add(".x + 2").unwrap();
        set.link().unwrap();
        let input = || json_to_val(&json!({"x": 1}));
        assert_eq!(first.first_json(input()).unwrap(), json!(2));
        assert_eq!(second.first_json(input()).unwrap(), json!(3));
    }

    #[test]
    fn referenced_nodes_finds_literal_paths() {
        assert_eq!(
            referenced_nodes(r#".nodes.a.output + .nodes["b-c"].output | .nodes . "d" | .nodes"#),
            vec!["a", "b-c", "d"]
        );
    }
}
