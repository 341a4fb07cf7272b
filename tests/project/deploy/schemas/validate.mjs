// Validates Kubernetes custom resources (Gateway API, KEDA) against the schemas their
// projects publish, as the kubernetes-models packages ship them: reads a JSON list of
// objects on stdin, writes a JSON list of {kind, name, errors} on stdout.
//
// Three checks, all from the packages, none written here:
// * the schema: the package's validator (types, patterns, enums, ranges);
// * unknown fields: the object type-checked against the package's TypeScript
//   declarations (an API server with strict field validation, kubectl's default,
//   refuses a field the schema lacks; the validator alone lets one through);
// * Gateway API's Experimental channel: a field the Go types mark
//   `<gateway:experimental>` is absent from the Standard channel's CRDs.
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGES = {
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
  "keda.sh": "@kubernetes-models/keda",
};
const EXPERIMENTAL = "<gateway:experimental>";

function modulePath(object) {
  const [group, version] = object.apiVersion.split("/");
  const pkg = PACKAGES[group];
  return pkg && `${pkg}/${group}/${version}/${object.kind}`;
}

async function schemaErrors(object) {
  const module = modulePath(object);
  if (!module) return [`no published schema here for ${object.apiVersion}`];
  let Model;
  try {
    Model = (await import(module))[object.kind];
  } catch {
    return [`${module}: no such model`];
  }
  try {
    new Model(object).validate();
    return [];
  } catch (error) {
    return error.message.split(/, (?=data)/);
  }
}

/** Type-checks every object in one in-memory TypeScript file beside node_modules. */
function typeErrors(objects) {
  const file = path.join(HERE, "__rendered__.ts");
  const lines = [];
  objects.forEach((object, index) => {
    const module = modulePath(object);
    if (!module) return;
    lines.push(`import type { I${object.kind} as T${index} } from "${module}";`);
    lines.push(`export const d${index} = (${JSON.stringify(object)}) satisfies T${index};`);
  });
  const source = lines.join("\n");
  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, ...rest) =>
    name === file
      ? ts.createSourceFile(name, source, ts.ScriptTarget.ES2022, true)
      : getSourceFile.call(host, name, ...rest);
  host.fileExists = (name) => name === file || fileExists.call(host, name);
  host.readFile = (name) => (name === file ? source : readFile.call(host, name));
  const program = ts.createProgram([file], options, host);
  const checked = program.getSourceFile(file);
  const checker = program.getTypeChecker();
  const errors = objects.map(() => []);
  const owner = (node) => {
    for (; node; node = node.parent) {
      if (ts.isVariableDeclaration(node)) return Number(node.name.text.slice(1));
    }
    return undefined;
  };
  for (const diagnostic of ts.getPreEmitDiagnostics(program, checked)) {
    const node = nodeAt(checked, diagnostic.start);
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, " ");
    errors[owner(node)]?.push(`${jsonPath(node)}: ${message}`);
  }
  visit(checked, (node) => {
    if (!ts.isPropertyAssignment(node) || !ts.isObjectLiteralExpression(node.parent)) return;
    const type = checker.getContextualType(node.parent);
    const name = node.name.text;
    const symbol = type && checker.getPropertyOfType(checker.getApparentType(type), name);
    const doc = symbol ? ts.displayPartsToString(symbol.getDocumentationComment(checker)) : "";
    if (doc.includes(EXPERIMENTAL)) {
      errors[owner(node)]?.push(`${jsonPath(node)}: Experimental channel only (${EXPERIMENTAL})`);
    }
  });
  return errors;
}

function visit(node, callback) {
  callback(node);
  ts.forEachChild(node, (child) => visit(child, callback));
}

function nodeAt(sourceFile, position) {
  let found = sourceFile;
  visit(sourceFile, (node) => {
    if (node.getStart(sourceFile) <= position && position < node.getEnd()) found = node;
  });
  return found;
}

/** `spec.rules[0].retry`, for the property or element a node lies in. */
function jsonPath(node) {
  const parts = [];
  for (; node; node = node.parent) {
    const parent = node.parent;
    if (ts.isPropertyAssignment(node)) parts.unshift(`.${node.name.text}`);
    else if (parent && ts.isArrayLiteralExpression(parent)) {
      parts.unshift(`[${parent.elements.indexOf(node)}]`);
    }
  }
  return parts.join("").slice(1) || "(object)";
}

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk)).on("end", () => resolve(text));
}));
const types = typeErrors(input);
const report = [];
for (const [index, object] of input.entries()) {
  report.push({
    kind: object.kind,
    name: object.metadata?.name,
    errors: [...(await schemaErrors(object)), ...types[index]],
  });
}
process.stdout.write(JSON.stringify(report, null, 1));
