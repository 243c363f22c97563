/**
 * Turns the user's TypeScript (or JavaScript) into an ES module the runner can
 * import: static imports are hoisted to the top, the rest of the program becomes
 * the body of an async function (so top-level `await` and `return` both work),
 * and esbuild strips the types. A kept runner compiling for itself gets, where the
 * program allows, a script instead, its types blanked in place (strip.ts): no esbuild.
 *
 * Why a real parser: esbuild alone rejects a file with both top-level `await`
 * and top-level `return`, and regexes cannot tell an import statement from the
 * same text inside a string or comment.
 */
import { parse } from "@babel/parser";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { blank, stripTypes, type Edit, type Node } from "./strip";

export type Language = "typescript" | "javascript";

export interface CompileOptions {
  language: Language;
  /** Working directory of the sandbox: relative imports resolve from here. */
  cwd: string;
  /** URL the `./iris-prime` import is rewritten to. */
  irisPrimeUrl: string;
  /** Name shown in stack traces, e.g. `main.ts`. */
  filename: string;
  /** Kept state: top-level declarations and imports become bindings of globalThis, seen by
   *  the next execution in the same runner (see keepDeclarations). */
  keep?: boolean;
  /** A kept runner compiling for itself: a script (run by node:vm) with the types blanked
   *  in place when the program allows (see strip.ts), else a module as ever. */
  script?: boolean;
}

export interface CompiledProgram {
  ok: true;
  code: string;
  /** `code` is a script: an expression, the async function (not a module's default). */
  script?: boolean;
  /** Rewritten specifier (URL or path) -> what the user wrote, for error messages. */
  specifiers: Record<string, string>;
}

export interface CompileFailure {
  ok: false;
  error: { name: string; message: string; stack: string };
}

/** esbuild's API, loaded on first use: its module's start-up is about 50 ms, which a kept
 *  runner compiling for itself (stripping types in place) never needs to pay. */
let esbuild: typeof import("esbuild") | null = null;

/** Name of the async function the program body becomes; the runner calls it. */
export const ENTRY = "__iris_main__";

/** Lines the wrapper adds before the user's code. */
export const HEADER_LINES = 1;

const IRIS_PRIME = /^(?:\.\/)?iris-prime(?:\.(?:ts|js|mjs|mts))?$/;

function rewriteSpecifier(spec: string, options: CompileOptions, seen: Record<string, string>): string {
  let target = spec;
  if (IRIS_PRIME.test(spec)) {
    target = options.irisPrimeUrl;
  } else if (spec.startsWith("./") || spec.startsWith("../") || spec.startsWith("/")) {
    target = pathToFileURL(path.resolve(options.cwd, spec)).href;
  }
  if (target !== spec) {
    seen[target] = spec;
    seen[decodeURI(new URL(target).pathname)] = spec;
  }
  return target;
}

function walk(node: unknown, visit: (n: Node) => void): void {
  if (Array.isArray(node)) {
    for (const child of node) walk(child, visit);
    return;
  }
  if (node === null || typeof node !== "object" || typeof (node as Node).type !== "string") return;
  visit(node as Node);
  for (const [key, value] of Object.entries(node)) {
    if (key === "loc" || key === "extra" || key === "leadingComments" || key === "trailingComments") continue;
    if (value !== null && typeof value === "object") walk(value, visit);
  }
}

function syntaxError(message: string, filename: string, line?: number, column?: number): CompileFailure {
  const where = line === undefined ? filename : `${filename}:${line}:${(column ?? 0) + 1}`;
  return { ok: false, error: { name: "SyntaxError", message, stack: `SyntaxError: ${message}\n    at ${where}` } };
}

/** The first half of a compile (pure JavaScript, synchronous): parse, rewrite imports, wrap. */
export interface Rewritten {
  ok: true;
  wrapped: string;
  specifiers: Record<string, string>;
  /** `wrapped` is a finished script (types stripped): no esbuild. */
  script?: boolean;
}

// -- kept state -----------------------------------------------------------------------------
//
// A kept runner evaluates each execution in the same realm; what one execution declares at
// top level must be there for the next, as in a REPL. The program is still the body of an
// async function (top-level await and return work as ever), so its top-level declarations
// are rewritten in place (lines and columns do not move) into bindings of globalThis:
//   const|let|var <pattern> = v   ->  (<pattern> = v)          names declared on globalThis first
//   import d, { a as b } from 'm' ->  ({ default: d, a: b } = await import('m'))
//   import * as ns from 'm'       ->  (ns = await import('m'))
//   function f() {}               ->  kept, plus globalThis.f = f first (it is hoisted)
//   class C {} / enum E {}        ->  kept, plus globalThis.C = C right after it
// `const` does not stay constant, and a binding declared again simply gets the new value.

interface Kept {
  /** Names assigned as globals (declared on globalThis before the code runs). */
  names: Set<string>;
  /** Hoisted function declarations, published at the start. */
  functions: Set<string>;
}

function patternNames(node: Node | null | undefined, into: Set<string>): void {
  if (!node) return;
  switch (node.type) {
    case "Identifier":
      into.add(node.name as string);
      break;
    case "ObjectPattern":
      for (const property of node.properties as Node[]) {
        patternNames(property.type === "RestElement" ? property : (property.value as Node), into);
      }
      break;
    case "ArrayPattern":
      for (const element of node.elements as (Node | null)[]) patternNames(element, into);
      break;
    case "AssignmentPattern":
      patternNames(node.left as Node, into);
      break;
    case "RestElement":
      patternNames(node.argument as Node, into);
      break;
    default:
      break;
  }
}

/** Blank a TypeScript annotation (and a definite `!`) on a declared name or pattern. */
function stripAnnotation(id: Node, edits: Edit[]): void {
  const annotation = id.typeAnnotation as Node | null | undefined;
  if (!annotation) return;
  const start = id.type === "Identifier" ? id.start + (id.name as string).length : annotation.start;
  edits.push({ start, end: annotation.end, text: " ".repeat(annotation.end - start) });
}

function keepVariables(declaration: Node, source: string, kept: Kept, edits: Edit[]): void {
  if (declaration.declare) return;
  const kind = declaration.kind as string;
  // `;` in the keyword's place: `(a = 1)` must not continue the line before it as a call.
  edits.push({ start: declaration.start, end: declaration.start + kind.length, text: ";" + " ".repeat(kind.length - 1) });
  for (const declarator of declaration.declarations as Node[]) {
    const id = declarator.id as Node;
    patternNames(id, kept.names);
    stripAnnotation(id, edits);
    // The `(` takes the blank before the name when there is one: columns stay the user's.
    const before = source[declarator.start - 1];
    const spaced = before === " " || before === "\t";
    edits.push({ start: declarator.start - (spaced ? 1 : 0), end: declarator.start, text: "(" });
    let close = declarator.init ? ")" : " = undefined)";
    // Ended without `;` (TypeScript's `const c = b as T` then `(f)`): `(c = b)` must not
    // take the next line as its call.
    const last = declarator === (declaration.declarations as Node[]).at(-1);
    if (last && source[declaration.end - 1] !== ";") close += ";";
    edits.push({ start: declarator.end, end: declarator.end, text: close });
  }
}

function keepDeclarations(node: Node, source: string, kept: Kept, edits: Edit[]): void {
  let declaration: Node | null | undefined = node;
  if (node.type === "ExportNamedDeclaration" || node.type === "ExportDefaultDeclaration") {
    declaration = node.declaration as Node | null | undefined;
  }
  if (!declaration) return;
  const id = declaration.id as (Node & { name: string }) | null | undefined;
  switch (declaration.type) {
    case "VariableDeclaration":
      keepVariables(declaration, source, kept, edits);
      break;
    case "FunctionDeclaration":
      if (id) kept.functions.add(id.name);
      break;
    case "ClassDeclaration":
    case "TSEnumDeclaration":
      if (id && !declaration.declare) {
        edits.push({ start: declaration.end, end: declaration.end, text: `;globalThis.${id.name} = ${id.name};` });
      }
      break;
    default:
      break;
  }
}

function keepImport(
  node: Node,
  text: string,
  literal: (spec: string) => string,
  kept: Kept,
  edits: Edit[],
): void {
  const newlines = "\n".repeat((text.match(/\n/g) ?? []).length);
  const src = node.source as Node & { value: string };
  const load = `await import(${literal(src.value)})`;
  if (node.importKind === "type") {
    edits.push({ start: node.start, end: node.end, text: blank(text) });
    return;
  }
  const fields: string[] = [];
  let namespace: string | null = null;
  for (const specifier of node.specifiers as Node[]) {
    const local = (specifier.local as Node & { name: string }).name;
    if (specifier.importKind === "type") continue;
    if (specifier.type === "ImportNamespaceSpecifier") namespace = local;
    else if (specifier.type === "ImportDefaultSpecifier") fields.push(`default: ${local}`);
    else {
      const imported = specifier.imported as Node & { name?: string; value?: string };
      fields.push(`${JSON.stringify(imported.name ?? imported.value)}: ${local}`);
    }
    kept.names.add(local);
  }
  const parts: string[] = [];
  if (namespace !== null && fields.length > 0) {
    parts.push(`(${namespace} = ${load}, { ${fields.join(", ")} } = ${namespace});`);
  } else if (namespace !== null) {
    parts.push(`(${namespace} = ${load});`);
  } else if (fields.length > 0) {
    parts.push(`({ ${fields.join(", ")} } = ${load});`);
  } else if ((node.specifiers as Node[]).length === 0) {
    parts.push(`${load};`);
  }
  // `;` first: `({ a } = ...)` must not continue the line before it as a call.
  edits.push({ start: node.start, end: node.end, text: ";" + parts.join("") + newlines });
}

/** What the wrapper runs first (on its own first line): the kept names exist on globalThis,
 *  so that assigning them works in strict code, and hoisted functions are published. */
function keptPrologue(kept: Kept): string {
  let text = "";
  if (kept.names.size > 0) {
    text += ` for (const name of ${JSON.stringify([...kept.names])}) if (!(name in globalThis)) globalThis[name] = undefined;`;
  }
  for (const name of kept.functions) text += ` globalThis.${name} = ${name};`;
  return text;
}

/** Stop esbuild's service process (a kept runner compiling for itself: no process of its
 *  own may outlive an execution; the next compile starts it again). */
export async function stopCompiler(): Promise<void> {
  if (esbuild !== null) await esbuild.stop();
}

export async function compile(source: string, options: CompileOptions): Promise<CompiledProgram | CompileFailure> {
  const rewritten = rewrite(source, options);
  if (rewritten.ok && rewritten.script) {
    return { ok: true, code: rewritten.wrapped, specifiers: rewritten.specifiers, script: true };
  }
  return rewritten.ok ? transform(rewritten, options) : rewritten;
}

/**
 * Parses and rewrites the program. This is the part whose cost depends on the input's
 * shape (the parser backtracks on some nestings): the shared compile service runs it in a
 * worker thread it can stop (see compiler.ts).
 */
export function rewrite(source: string, options: CompileOptions): Rewritten | CompileFailure {
  let program: { body: Node[]; interpreter?: Node | null };
  try {
    const file = parse(source, {
      sourceType: "module",
      plugins: options.language === "typescript" ? ["typescript"] : [],
      allowReturnOutsideFunction: true,
      allowAwaitOutsideFunction: true,
      allowImportExportEverywhere: false,
      errorRecovery: false,
    }) as unknown as { program: { body: Node[]; interpreter?: Node | null } };
    program = file.program;
  } catch (err) {
    const e = err as { message?: string; loc?: { line: number; column: number } };
    const message = (e.message ?? String(err)).replace(/ \(\d+:\d+\)$/, "");
    return syntaxError(message, options.filename, e.loc?.line, e.loc?.column);
  }

  const specifiers: Record<string, string> = {};
  const hoisted: string[] = [];
  const kept: Kept = { names: new Set(), functions: new Set() };
  const edits: Edit[] = [];
  const literal = (spec: string) => JSON.stringify(rewriteSpecifier(spec, options, specifiers));

  if (program.interpreter) {
    const n = program.interpreter;
    edits.push({ start: n.start, end: n.end, text: blank(source.slice(n.start, n.end)) });
  }

  for (const node of program.body) {
    const text = source.slice(node.start, node.end);
    switch (node.type) {
      case "ImportDeclaration": {
        if (options.keep) {
          keepImport(node, text, literal, kept, edits);
          break;
        }
        edits.push({ start: node.start, end: node.end, text: blank(text) });
        if (node.importKind === "type") break;
        const src = node.source as Node & { value: string };
        const rewritten =
          source.slice(node.start, src.start) + literal(src.value) + source.slice(src.end, node.end);
        hoisted.push(rewritten.replace(/[\r\n]+/g, " ").replace(/;?\s*$/, ";"));
        break;
      }
      case "ExportAllDeclaration":
      case "ExportNamedDeclaration": {
        const declaration = node.declaration as Node | null | undefined;
        if (declaration) {
          // `export const x = 1` inside a function body is a syntax error: keep the declaration.
          edits.push({ start: node.start, end: declaration.start, text: blank(source.slice(node.start, declaration.start)) });
          break;
        }
        edits.push({ start: node.start, end: node.end, text: blank(text) });
        const src = node.source as (Node & { value: string }) | null | undefined;
        if (src && node.exportKind !== "type") hoisted.push(`import ${literal(src.value)};`);
        break;
      }
      case "ExportDefaultDeclaration": {
        const declaration = node.declaration as Node & { id?: unknown };
        const named =
          (declaration.type === "FunctionDeclaration" || declaration.type === "ClassDeclaration") &&
          declaration.id;
        const prefix = source.slice(node.start, declaration.start);
        if (named) {
          edits.push({ start: node.start, end: declaration.start, text: blank(prefix) });
        } else {
          edits.push({ start: node.start, end: declaration.start, text: "void (" + blank(prefix).slice(6) });
          edits.push({ start: declaration.end, end: declaration.end, text: ")" });
        }
        break;
      }
      case "TSImportEqualsDeclaration": {
        const ref = node.moduleReference as Node & { expression?: Node & { value: string } };
        if (ref.type === "TSExternalModuleReference" && ref.expression) {
          const id = node.id as Node & { name: string };
          const binding = options.keep ? `globalThis.${id.name} =` : `const ${id.name} =`;
          edits.push({
            start: node.start,
            end: node.end,
            text: `${binding} require(${JSON.stringify(ref.expression.value)});`,
          });
        }
        break;
      }
      case "TSExportAssignment": {
        const expression = node.expression as Node;
        edits.push({ start: node.start, end: expression.start, text: "void (" });
        edits.push({ start: expression.end, end: expression.end, text: ")" });
        break;
      }
      default:
        break;
    }
    if (options.keep) keepDeclarations(node, source, kept, edits);
  }

  // Literal dynamic imports resolve like static ones (from the sandbox's working directory).
  let importMeta = false;
  walk(program.body, (n) => {
    if (n.type === "MetaProperty" && (n.meta as Node & { name: string }).name === "import") importMeta = true;
    if (n.type === "ImportExpression") {
      const src = n.source as Node & { value?: unknown };
      if (src.type === "StringLiteral" && typeof src.value === "string") {
        edits.push({ start: src.start, end: src.end, text: literal(src.value) });
      }
    }
  });

  // A script (kept runner, see CompileOptions.script): nothing a script cannot hold, and
  // types that erase in place. Not with `<!--` or `-->` anywhere: in a script they may
  // start a comment (`a <!--b` is `a`), in a module they are operators or an error.
  let script = false;
  if (options.script && options.keep && hoisted.length === 0 && !importMeta && !/<!--|-->/.test(source)) {
    const stripped = options.language === "typescript" ? stripTypes(program.body, source) : [];
    if (stripped !== null) {
      edits.push(...stripped);
      script = true;
    }
  }

  edits.sort((a, b) => a.start - b.start || a.end - b.end);
  let body = "";
  let cursor = 0;
  for (const edit of edits) {
    if (edit.start < cursor) continue; // nested edit inside one already applied
    body += source.slice(cursor, edit.start) + edit.text;
    cursor = edit.end;
  }
  body += source.slice(cursor);

  // Everything added goes on one line before the user's first line; the runner takes
  // HEADER_LINES off line numbers in stack traces, so they match what the user wrote.
  if (script) {
    // Strict, as a module is. The function's value is the script's completion value.
    const head = `(async function ${ENTRY}(require, __filename, __dirname) {"use strict";`;
    return { ok: true, wrapped: head + keptPrologue(kept) + "\n" + body + "\n})\n", specifiers, script };
  }
  const wrapped =
    hoisted.join(" ") +
    ` export default async function ${ENTRY}(require, __filename, __dirname) {` +
    keptPrologue(kept) +
    "\n" +
    body +
    "\n}\n";
  return { ok: true, wrapped, specifiers };
}

/** The second half: esbuild strips the types (its own process, linear in the input). */
export async function transform(
  rewritten: Rewritten,
  options: CompileOptions,
): Promise<CompiledProgram | CompileFailure> {
  const { wrapped, specifiers } = rewritten;
  try {
    esbuild ??= await import("esbuild");
    const out = await esbuild.transform(wrapped, {
      loader: options.language === "typescript" ? "ts" : "js",
      format: "esm",
      target: "node20",
      sourcemap: "inline",
      sourcefile: options.filename,
      sourcesContent: false,
      // Unused and type-only imports still load their module (as `import "x"`), so a
      // missing module fails the way it would in plain JavaScript.
      tsconfigRaw: { compilerOptions: { importsNotUsedAsValues: "preserve" } },
      logLevel: "silent",
    });
    return { ok: true, code: out.code, specifiers };
  } catch (err) {
    const failure = err as { errors?: { text: string; location?: { line: number; column: number } | null }[] };
    const first = failure.errors?.[0];
    if (!first) throw err;
    const line = first.location ? first.location.line - HEADER_LINES : undefined;
    return syntaxError(first.text, options.filename, line, first.location?.column);
  }
}
