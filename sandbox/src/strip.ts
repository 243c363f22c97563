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
 * with esbuild, as everywhere else.
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

/** Replaces every character but line breaks by a space, so lines and columns stay put. */
export function blank(text: string): string {
  return text.replace(/[^\n\r]/g, " ");
}

/** Thrown inside the walk: something that does not erase cleanly. */
class Unsupported extends Error {}

/** Children that are never types: not looked into for TypeScript. */
const SKIP = new Set(["loc", "extra", "leadingComments", "trailingComments", "innerComments"]);
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
  /** Where ``token`` starts at or after ``from``, past blanks and closing parentheses (a
   *  parenthesized expression's node ends inside them). */
  const after = (from: number, token: string): number => {
    let i = from;
    while (i < source.length && /[\s)]/.test(source[i])) i++;
    if (!source.startsWith(token, i)) throw new Unsupported();
    return i;
  };
  /** An expression whose type was blanked (`x as T`): the next line must not continue it,
   *  or blanking would join two statements TypeScript kept apart. */
  const endsCleanly = (end: number): void => {
    const rest = /^[ \t]*(?:\r?\n|\r)\s*(.)/.exec(source.slice(end, end + 200));
    if (rest && "([`+-/<".includes(rest[1])) throw new Unsupported();
  };

  const typeOnly = (node: Node, key: string): void => {
    if (key === "returnType" && /[\n\r]/.test(source.slice(node.start, node.end))) {
      // `(a): T => x` with a line break in `: T` would put one before `=>`.
      throw new Unsupported();
    }
    erase(node.start, node.end);
  };

  const visit = (node: Node, parent: Node | null): void => {
    if (Array.isArray(node.decorators) && node.decorators.length > 0) throw new Unsupported();
    switch (node.type) {
      case "TSInterfaceDeclaration":
      case "TSTypeAliasDeclaration":
      case "TSDeclareFunction":
      case "TSDeclareMethod":
      case "TSIndexSignature":
        eraseStatement(node);
        return;
      case "TSEnumDeclaration":
      case "TSModuleDeclaration":
        if (!node.declare) throw new Unsupported(); // code: esbuild writes it
        eraseStatement(node);
        return;
      case "TSImportEqualsDeclaration": {
        // `import x = require('m')` is rewritten by compile.ts; the alias form is code.
        const ref = node.moduleReference as Node;
        if (ref.type !== "TSExternalModuleReference") throw new Unsupported();
        return;
      }
      case "TSExportAssignment":
        visit(node.expression as Node, node);
        return;
      case "TSAsExpression":
      case "TSSatisfiesExpression": {
        // From the keyword on: past the parentheses of a parenthesized `(x) as T`.
        const expression = node.expression as Node;
        visit(expression, node);
        const at = after(expression.end, node.type === "TSAsExpression" ? "as" : "satisfies");
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
        if (/[\n\r]/.test(source.slice(node.start, close))) throw new Unsupported();
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
      case "ClassPrivateMethod":
        if (node.abstract || node.declare) return eraseStatement(node);
        member(node);
        break;
      case "Identifier":
        if (parent !== null && node.name === "this" && Array.isArray(parent.params) && parent.params[0] === node) {
          // `function f(this: T, a)`: the `this` parameter goes, with its comma.
          const next = (parent.params as Node[])[1];
          erase(node.start, next ? next.start : node.end);
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

  /** A class member: its TypeScript modifiers, and `?` / `!` after its name. */
  const member = (node: Node): void => {
    const key = node.key as Node;
    if (node.accessibility || node.readonly || node.override) {
      const prefix = source.slice(node.start, key.start);
      for (const m of prefix.matchAll(MODIFIERS)) erase(node.start + m.index, node.start + m.index + m[0].length);
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
