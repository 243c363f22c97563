// The page's one notice area: API errors with their message and requestId (and, for 429,
// when to retry).
import { ApiError } from "./api";
import { h } from "./dom";

function area(): HTMLElement {
  return document.getElementById("notice") as HTMLElement;
}

export function clearNotice(): void {
  area().replaceChildren();
}

export function showError(error: unknown): void {
  clearNotice();
  if (error instanceof ApiError) {
    const retry = error.retryAfterS !== null ? ` Retry in ${error.retryAfterS} s.` : "";
    area().append(
      h(
        "div",
        { class: "error", "data-status": error.status },
        h("strong", {}, error.status ? `${error.status} ${error.title}: ` : `${error.title}: `),
        error.message,
        retry,
        error.requestId ? h("span", { class: "request-id" }, ` (requestId ${error.requestId})`) : null,
      ),
    );
  } else {
    area().append(h("div", { class: "error" }, error instanceof Error ? error.message : String(error)));
  }
}

export function go(route: string): void {
  if (location.hash === `#/${route}`) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = `#/${route}`;
}
