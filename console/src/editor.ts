// The code editor: CodeMirror 6 with only what it needs (highlighting for TypeScript,
// JavaScript and Python, history, bracket matching, a keymap).
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { bracketMatching, indentOnInput, syntaxHighlighting } from "@codemirror/language";
import { tokenClasses } from "./theme";
import { Compartment, EditorState, type Extension } from "@codemirror/state";
import { EditorView, drawSelection, highlightActiveLine, keymap, lineNumbers } from "@codemirror/view";

export type Language = "typescript" | "javascript" | "python";

/** The language's highlighting, loaded on first use (its own file): the editor shows at
 *  once and colours its text a moment later. */
async function languageSupport(language: Language): Promise<Extension> {
  if (language === "python") return (await import("@codemirror/lang-python")).python();
  return (await import("@codemirror/lang-javascript")).javascript({ typescript: language === "typescript" });
}

export interface CodeEditor {
  view: EditorView;
  code(): string;
  setCode(code: string): void;
  setLanguage(language: Language): void;
}

export function createEditor(parent: HTMLElement, label: string, code: string, language: Language, run: () => void): CodeEditor {
  const lang = new Compartment();
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: code,
      extensions: [
        lineNumbers(),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        highlightActiveLine(),
        syntaxHighlighting(tokenClasses),
        keymap.of([
          { key: "Mod-Enter", run: () => (run(), true) },
          // Tab indents; Escape then Tab leaves the editor (CodeMirror's accessible default).
          indentWithTab,
          ...defaultKeymap,
          ...historyKeymap,
        ]),
        EditorView.contentAttributes.of({ "aria-label": label }),
        // The page's Content-Security-Policy admits CodeMirror's <style> by this nonce.
        EditorView.cspNonce.of(document.querySelector<HTMLMetaElement>('meta[name="style-nonce"]')?.content ?? ""),
        EditorState.tabSize.of(2),
        // Long lines wrap and the editor grows with its text: nothing scrolls inside it,
        // which keeps it usable at 375 px and keyboard-reachable as one field.
        EditorView.lineWrapping,
        lang.of([]),
      ],
    }),
  });
  let wanted = language;
  const setLanguage = (next: Language): void => {
    wanted = next;
    void languageSupport(next).then((support) => {
      if (wanted === next) view.dispatch({ effects: lang.reconfigure(support) });
    });
  };
  setLanguage(language);
  return {
    view,
    code: () => view.state.doc.toString(),
    setCode: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    setLanguage,
  };
}
