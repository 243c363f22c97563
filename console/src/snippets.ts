// "Copy as": the exact request the playground sends, as curl, fetch or Python. The key is
// never copied: each snippet reads it from the IRIS_API_KEY environment variable.

export interface RequestShape {
  url: string;
  body: Record<string, unknown>;
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

export function asCurl(request: RequestShape): string {
  return [
    `curl -sS -X POST ${shellQuote(request.url)} \\`,
    `  -H "Authorization: Bearer $IRIS_API_KEY" \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  --data-binary ${shellQuote(JSON.stringify(request.body))}`,
  ].join("\n");
}

export function asFetch(request: RequestShape): string {
  return [
    `const response = await fetch(${JSON.stringify(request.url)}, {`,
    `  method: "POST",`,
    `  headers: {`,
    `    Authorization: \`Bearer \${process.env.IRIS_API_KEY}\`,`,
    `    "Content-Type": "application/json",`,
    `  },`,
    `  body: JSON.stringify(${JSON.stringify(request.body, null, 2).replace(/\n/g, "\n  ")}),`,
    `});`,
    `console.log(await response.json());`,
  ].join("\n");
}

/** JSON text as a Python literal (true/false/null spelled the Python way). */
function pythonLiteral(value: unknown, indent = ""): string {
  const next = indent + "    ";
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return JSON.stringify(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => next + pythonLiteral(v, next)).join(",\n")},\n${indent}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (!entries.length) return "{}";
  return `{\n${entries.map(([k, v]) => `${next}${JSON.stringify(k)}: ${pythonLiteral(v, next)}`).join(",\n")},\n${indent}}`;
}

export function asPython(request: RequestShape): string {
  return [
    "import json, os, urllib.request",
    "",
    `body = ${pythonLiteral(request.body)}`,
    "request = urllib.request.Request(",
    `    ${JSON.stringify(request.url)},`,
    "    data=json.dumps(body).encode(),",
    '    headers={"Authorization": f"Bearer {os.environ[\'IRIS_API_KEY\']}", "Content-Type": "application/json"},',
    '    method="POST",',
    ")",
    "with urllib.request.urlopen(request) as response:",
    "    print(json.load(response))",
  ].join("\n");
}
