// Token classes for highlighting: their colours are in app.css, one set per theme, so one
// editor serves the light and the dark theme.
import { HighlightStyle } from "@codemirror/language";
import { tags as t } from "@lezer/highlight";

export const tokenClasses = HighlightStyle.define([
  { tag: [t.keyword, t.moduleKeyword, t.controlKeyword, t.operatorKeyword], class: "tok-kw" },
  { tag: [t.string, t.special(t.string), t.regexp], class: "tok-str" },
  { tag: [t.number, t.bool, t.null], class: "tok-num" },
  { tag: [t.comment, t.lineComment, t.blockComment], class: "tok-com" },
  { tag: [t.function(t.variableName), t.function(t.propertyName)], class: "tok-fn" },
  { tag: [t.typeName, t.className], class: "tok-type" },
  { tag: [t.definition(t.variableName)], class: "tok-def" },
]);
