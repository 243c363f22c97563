/**
 * Type stripping in place: the edits that turn a parsed TypeScript program into JavaScript
 * by blanking its types, so every line and column stays where the user wrote it (no source
 * map, no second process). A kept runner uses it to compile for itself (runner.ts): esbuild
 * would be a process per execution there, and the shared compile service a round trip.
 *
 * Only what erases cleanly is stripped: annotations, type parameters and arguments,
 * interfaces, type aliases, `declare`, overloads, `as`/`satisfies`/`!`/`<T>x`, modifiers
 * and `abstract` members, `implements`. What TypeScript turns into code (enums, namespaces,
 * parameter properties, decorators), syntax Node 20 lacks (`using`, `accessor`) and every
 * TypeScript node not listed here make `stripTypes` answer null: the caller then compiles
 * with esbuild, as everywhere else. So does a blank that would change how JavaScript reads
 * what is left (an operand regrouped, two lines joined into a call, `<T>{}` become a block, a
 * field named `get` become a modifier) and what esbuild rejects that babel takes: a kept
 * run must answer what a fresh one does (tests/integration/test_keep_state_compile.py).
 */

export interface Edit {
  start: number;
  end: number;
  text: string;
}

export interface Node {
  type: string;
  start: number;
  end: number;
  [key: string]: unknown;
}

/** Replaces every character but line breaks (V8 counts U+2028 and U+2029 as lines too) by a
 *  space, so lines and columns stay put. */
export function blank(text: string): string {
  return text.replace(/[^\n\r\u2028\u2029]/g, " ");
}

/** Thrown inside the walk: something that does not erase cleanly. */
class Unsupported extends Error {}

/** Children that are never types: not looked into for TypeScript. */
const SKIP = new Set(["loc", "extra", "leadingComments", "trailingComments", "innerComments"]);
/** Class fields named as a modifier, without initializer: JavaScript reads one as a modifier
 *  of the next member once its type is blanked (`get: number` then `foo() {}` on the next
 *  line is a getter `get foo() {}`), and esbuild reads `readonly` then `x` on the next line
 *  as a modifier where TypeScript and babel read a field `readonly`. */
const MODIFIER_NAMES = new Set([
  "get", "set", "static", "async", "accessor",
  "public", "private", "protected", "readonly", "override", "declare", "abstract",
]);
/** How tightly binary operators bind: a blanked `as T` must not let its operand's operator
 *  regroup with the one around it (`a + b as T * 2` is `(a + b) * 2`). */
const PRECEDENCE: Record<string, number> = {
  "??": 1, "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6, "===": 6, "!==": 6,
  "<": 7, ">": 7, "<=": 7, ">=": 7, instanceof: 7, in: 7, "<<": 8, ">>": 8, ">>>": 8,
  "+": 9, "-": 9, "*": 10, "/": 10, "%": 10, "**": 11,
};
const OPERATORS = new Set(["BinaryExpression", "LogicalExpression"]);
/** Member and parameter modifiers TypeScript has and JavaScript does not. */
const MODIFIERS = /\b(?:public|private|protected|readonly|override|declare|abstract)\b/g;

function isNode(value: unknown): value is Node {
  return value !== null && typeof value === "object" && typeof (value as Node).type === "string";
}

/**
 * The edits that strip the types of ``body`` (a program's statements), or null when the
 * program has TypeScript that does not simply erase.
 */
export function stripTypes(body: Node[], source: string): Edit[] | null {
  const edits: Edit[] = [];
  const erase = (start: number, end: number): void => {
    if (end > start) edits.push({ start, end, text: blank(source.slice(start, end)) });
  };
  /** A whole statement or class member: an empty statement in its place, so the code before
   *  it and the code after it do not run together (`a = b` / `interface I {}` / `(c)`). */
  const eraseStatement = (node: Node): void => {
    edits.push({ start: node.start, end: node.end, text: ";" + blank(source.slice(node.start + 1, node.end)) });
  };
  /** Position of ``char`` at or after ``from``, past blanks and a computed key's `]`. */
  const find = (from: number, char: string): number => {
    for (let i = from; i < source.length; i++) {
      const c = source[i];
      if (c === char) return i;
      if (c !== " " && c !== "\t" && c !== "]") break;
    }
    throw new Unsupported();
  };
  /** Where ``token`` starts at or after ``from``, past blanks, comments and closing
   *  parentheses (a parenthesized expression's node ends inside them). */
  const after = (from: number, token: string): number => {
    let next = nextCode(from);
    while (next.char === ")") next = nextCode(next.at + 1);
    if (!source.startsWith(token, next.at)) throw new Unsupported();
    return next.at;
  };
  /** The first character of code at or after ``from`` (past blanks and comments), where it
   *  is, and whether a line break comes before it. */
  const nextCode = (from: number): { char: string; at: number; newline: boolean } => {
    let newline = false;
    let i = from;
    while (i < source.length) {
      const c = source[i];
      if (/[\n\r\u2028\u2029]/.test(c)) newline = true;
      else if (source.startsWith("//", i)) {
        while (i < source.length && !/[\n\r\u2028\u2029]/.test(source[i])) i++;
        continue;
      } else if (source.startsWith("/*", i)) {
        const close = source.indexOf("*/", i + 2);
        if (close < 0) break;
        if (/[\n\r\u2028\u2029]/.test(source.slice(i, close))) newline = true;
        i = close + 2;
        continue;
      } else if (!/\s/.test(c)) return { char: c, at: i, newline };
      i++;
    }
    return { char: "", at: i, newline };
  };
  /** An expression whose type was blanked (`x as T`): what follows must not continue it, or
   *  blanking would join two statements TypeScript kept apart (`b as T` then `(f)()` on the
   *  next line, a comment between or not). */
  const endsCleanly = (end: number): void => {
    const next = nextCode(end);
    if (next.char === "") return;
    if ("([`".includes(next.char) || (next.newline && "+-/<".includes(next.char))) throw new Unsupported();
  };

  const typeOnly = (node: Node, key: string): void => {
    if (key === "returnType" && /[\n\r]/.test(source.slice(node.start, node.end))) {
      // `(a): T => x` with a line break in `: T` would put one before `=>`.
      throw new Unsupported();
    }
    erase(node.start, node.end);
  };

  /** Where a statement or an arrow's expression body starts: what is blanked there must not
   *  leave a `{`, `function` or `class` that JavaScript would read as a statement's. */
  const leading = new Set<number>();

  const visit = (node: Node, parent: Node | null): void => {
    if (Array.isArray(node.decorators) && node.decorators.length > 0) throw new Unsupported();
    if (node.type === "ExpressionStatement") leading.add(node.start);
    if (node.type === "ArrowFunctionExpression") {
      const body = node.body as Node;
      if (!parenthesized(body)) leading.add(body.start);
    }
    switch (node.type) {
      case "TSInterfaceDeclaration":
      case "TSTypeAliasDeclaration":
      case "TSDeclareFunction":
      case "TSDeclareMethod":
      case "TSIndexSignature":
        eraseStatement(node);
        return;
      case "TSEnumDeclaration":
        if (!node.declare) throw new Unsupported(); // code: esbuild writes it
        eraseStatement(node);
        return;
      case "TSModuleDeclaration":
        // Code, or (`declare module 'm' {}`, `declare namespace N {}`) what esbuild rejects
        // inside the function a program becomes: the same answer as a fresh run.
        throw new Unsupported();
      case "TSImportEqualsDeclaration": {
        // `import x = require('m')` at top level is rewritten by compile.ts; the alias form
        // is code, and an exported one is left as it is.
        const ref = node.moduleReference as Node;
        if (ref.type !== "TSExternalModuleReference" || parent !== null) throw new Unsupported();
        return;
      }
      case "TSExportAssignment":
        visit(node.expression as Node, node);
        return;
      case "TSAsExpression":
      case "TSSatisfiesExpression": {
        // From the keyword on: past the parentheses of a parenthesized `(x) as T`.
        const expression = node.expression as Node;
        if (parent !== null && OPERATORS.has(parent.type) && parent.left === node && !parenthesized(node)) {
          // The left operand (`a + b as T * 2`): blanked, its operator must still bind first.
          let inner = expression;
          while (/^TS(?:As|Satisfies)Expression$/.test(inner.type) && !parenthesized(inner)) {
            inner = inner.expression as Node;
          }
          if (OPERATORS.has(inner.type) && !parenthesized(inner)) {
            const outer = PRECEDENCE[parent.operator as string] ?? 0;
            const own = PRECEDENCE[inner.operator as string] ?? 0;
            if (own < outer || (own === outer && outer === PRECEDENCE["**"])) throw new Unsupported();
          }
        }
        visit(expression, node);
        const at = after(expression.end, node.type === "TSAsExpression" ? "as" : "satisfies");
        const annotation = node.typeAnnotation as Node;
        if (annotation.type === "TSTypeReference" && /^const\b/.test(source.slice(annotation.start, annotation.end))) {
          // `x as const | 0`: TypeScript and esbuild read the type `const | 0`, babel `as const`.
          const next = nextCode(node.end);
          if (/^(?:&(?!&)|\|(?!\|))/.test(source.slice(next.at, next.at + 2))) throw new Unsupported();
        }
        erase(at, node.end);
        endsCleanly(node.end);
        return;
      }
      case "TSNonNullExpression": {
        const expression = node.expression as Node;
        visit(expression, node);
        erase(after(expression.end, "!"), node.end);
        return;
      }
      case "TSTypeAssertion": {
        // `<T>x`: up to the `>` after the type (the expression may start with its `(`).
        const expression = node.expression as Node;
        const close = after((node.typeAnnotation as Node).end, ">") + 1;
        if (/[\n\r\u2028\u2029]/.test(source.slice(node.start, close))) throw new Unsupported();
        if (leading.has(node.start)) {
          // First in a statement or an arrow's body: blanked, `<T>{ a: 1 }` would be a
          // block there, `<T>function f() {}` a declaration.
          const next = nextCode(close);
          if (/^(?:\{|function\b|class\b|let\b|async\b)/.test(source.slice(next.at, next.at + 9))) {
            throw new Unsupported();
          }
          leading.add(next.at); // `<A><B>{}`
        }
        erase(node.start, close);
        visit(expression, node);
        return;
      }
      case "TSInstantiationExpression": {
        visit(node.expression as Node, node);
        const types = node.typeArguments ?? node.typeParameters;
        if (!isNode(types)) throw new Unsupported();
        erase(types.start, types.end);
        endsCleanly(node.end);
        return;
      }
      case "TSParameterProperty":
      case "ClassAccessorProperty":
        throw new Unsupported();
      case "VariableDeclaration":
        if (node.declare) return eraseStatement(node);
        if (node.kind !== "var" && node.kind !== "let" && node.kind !== "const") throw new Unsupported(); // using
        break;
      case "ClassDeclaration":
      case "ClassExpression":
        if (node.declare) return eraseStatement(node);
        if (node.abstract) {
          const keyword = /^abstract\b/.exec(source.slice(node.start, node.start + 8));
          if (!keyword) throw new Unsupported();
          erase(node.start, node.start + 8);
        }
        if (Array.isArray(node.implements) && node.implements.length > 0) {
          const list = node.implements as Node[];
          const at = source.lastIndexOf("implements", list[0].start);
          if (at < 0) throw new Unsupported();
          erase(at, list[list.length - 1].end);
        }
        break;
      case "ClassProperty":
      case "ClassPrivateProperty":
      case "ClassMethod":
      case "ClassPrivateMethod": {
        const key = node.key as Node;
        // esbuild rejects `declare #x` (a fresh run's answer): so does the fallback.
        if (node.declare && key.type === "PrivateName") throw new Unsupported();
        if (
          node.type === "ClassProperty" &&
          !node.computed &&
          key.type === "Identifier" &&
          MODIFIER_NAMES.has(key.name as string) &&
          node.value == null
        ) {
          throw new Unsupported(); // declared too: esbuild reads `declare public` `readonly x` as one
        }
        if (node.abstract || node.declare) return eraseStatement(node);
        member(node);
        break;
      }
      case "Identifier":
        if (parent !== null && node.name === "this" && Array.isArray(parent.params) && parent.params[0] === node) {
          // `function f(this: T, a)`: the `this` parameter goes, with its comma (a trailing
          // one too: `f(this: T,)`).
          const next = (parent.params as Node[])[1];
          const comma = /^\s*,/.exec(source.slice(node.end, node.end + 100));
          erase(node.start, next ? next.start : comma ? node.end + comma[0].length : node.end);
          return;
        }
        if (node.optional) {
          const annotation = node.typeAnnotation as Node | null | undefined;
          erase(node.start + (node.name as string).length, annotation ? annotation.start : node.end);
        }
        break;
      case "ObjectPattern":
      case "ArrayPattern":
      case "RestElement":
      case "AssignmentPattern":
        if (node.optional) {
          const annotation = node.typeAnnotation as Node | null | undefined;
          const at = source.lastIndexOf("?", annotation ? annotation.start : node.end);
          if (at < node.start) throw new Unsupported();
          erase(at, at + 1);
        }
        break;
      case "VariableDeclarator":
        if (node.definite) {
          const id = node.id as Node;
          const annotation = id.typeAnnotation as Node | null | undefined;
          if (id.type !== "Identifier" || !annotation) throw new Unsupported();
          erase(id.start + (id.name as string).length, annotation.start);
        }
        break;
      default:
        if (node.type.startsWith("TS")) throw new Unsupported();
    }
    children(node);
  };

  const parenthesized = (node: Node): boolean =>
    (node.extra as { parenthesized?: boolean } | undefined)?.parenthesized === true;

  /** A class member: its TypeScript modifiers, and `?` / `!` after its name. */
  const member = (node: Node): void => {
    const key = node.key as Node;
    if (node.accessibility || node.readonly || node.override) {
      const prefix = source.slice(node.start, key.start);
      for (const m of prefix.matchAll(MODIFIERS)) {
        const start = node.start + m.index;
        erase(start, start + m[0].length);
        // First in the member: a `;` in its place, or the member before it (`x = a`) would
        // run on into what follows (`private [k] = 1`: `x = a[k] = 1`).
        if (m.index === 0) edits[edits.length - 1].text = ";" + blank(m[0].slice(1));
      }
    }
    if (node.optional) {
      const at = find(key.end, "?");
      erase(at, at + 1);
    }
    if (node.definite) {
      const at = find(key.end, "!");
      erase(at, at + 1);
    }
  };

  const children = (node: Node): void => {
    for (const key of Object.keys(node)) {
      if (SKIP.has(key) || key === "decorators") continue;
      const value = node[key];
      if (Array.isArray(value)) {
        if (key === "implements") continue; // erased with its keyword
        for (const item of value) if (isNode(item)) child(item, key, node);
      } else if (isNode(value)) {
        child(value, key, node);
      }
    }
  };

  const child = (value: Node, key: string, owner: Node): void => {
    if (
      key === "typeAnnotation" ||
      key === "returnType" ||
      key === "typeParameters" ||
      key === "typeArguments" ||
      key === "superTypeArguments" ||
      key === "superTypeParameters"
    ) {
      if (value.type.startsWith("TS")) return typeOnly(value, key);
    }
    visit(value, owner);
  };

  try {
    for (const node of body) visit(node, null);
  } catch (err) {
    if (err instanceof Unsupported) return null;
    throw err;
  }
  return edits;
}
