// The IRIS console: a hash-routed page over the public API.
import { apiKey, getJson, onUnauthorized, signIn, signOut } from "./api";
import { h, field } from "./dom";
import { auditPage, executionPage, executionsPage, sandboxesPage } from "./lists";
import { irisPage } from "./iris";
import { clearNotice, go, showError } from "./notice";
import { playgroundPage } from "./playground";

const PAGES: [string, string][] = [
  ["playground", "Playground"],
  ["sandboxes", "Sandboxes"],
  ["executions", "Executions"],
  ["iris", "IRIS"],
  ["audit", "Audit"],
];

const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
const signOutButton = document.getElementById("signout") as HTMLButtonElement;
const themeButton = document.getElementById("theme") as HTMLButtonElement;

function signInPage(): HTMLElement {
  const input = h("input", { type: "password", autocomplete: "off", spellcheck: "false", required: true });
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", {}, "Paste an API key of your project (", h("code", {}, "iris-exec keys create --project P"),
      "). It is kept in this tab's session storage only, and sent only in the Authorization header."),
    field("API key", input),
    h("button", { type: "submit" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    signIn(key);
    try {
      await getJson("api/iris/sandboxes", { limit: "1" });
      clearNotice();
      go("playground");
    } catch (error) {
      signOut();
      showError(error);
    }
  });
  return form;
}

async function render(): Promise<void> {
  const [route, ...rest] = location.hash.replace(/^#\/?/, "").split("?")[0].split("/");
  const signedIn = apiKey() !== null;
  nav.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  let page: HTMLElement | Promise<HTMLElement>;
  let title = "Sign in";
  if (!signedIn) {
    page = signInPage();
  } else {
    const name = PAGES.some(([id]) => id === route) ? route : "playground";
    title = PAGES.find(([id]) => id === name)?.[1] ?? "Playground";
    for (const link of nav.querySelectorAll("a")) {
      if (link.dataset.page === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (name === "executions" && rest[0]) page = executionPage(decodeURIComponent(rest[0]));
    else if (name === "sandboxes") page = sandboxesPage();
    else if (name === "executions") page = executionsPage();
    else if (name === "iris") page = irisPage();
    else if (name === "audit") page = auditPage();
    else page = playgroundPage();
  }
  document.title = `${title} · IRIS console`;
  try {
    const element = await page;
    main.replaceChildren(element);
  } catch (error) {
    main.replaceChildren(h("h1", {}, title));
    showError(error);
  }
  main.focus({ preventScroll: true });
}

function theme(dark: boolean): void {
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  themeButton.setAttribute("aria-pressed", String(dark));
  localStorage.setItem("iris.theme", dark ? "dark" : "light");
}

nav.append(
  h("ul", {}, ...PAGES.map(([id, label]) => h("li", {}, h("a", { href: `#/${id}`, "data-page": id }, label)))),
);
signOutButton.addEventListener("click", () => {
  signOut();
  clearNotice();
  go("");
});
const stored = localStorage.getItem("iris.theme");
theme(stored ? stored === "dark" : matchMedia("(prefers-color-scheme: dark)").matches);
themeButton.addEventListener("click", () => theme(document.documentElement.dataset.theme !== "dark"));
let keepNotice = false;
onUnauthorized(() => {
  signOut();
  keepNotice = true; // the 401's message stays on the sign-in page
  if (location.hash !== "#/") location.hash = "#/";
  else void render();
});
window.addEventListener("hashchange", () => {
  if (!keepNotice) clearNotice();
  keepNotice = false;
  void render();
});
void render();
