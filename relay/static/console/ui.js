// Small DOM helpers: elements are built with textContent (never innerHTML), so nothing the relay
// returns can become markup or script.
export const $ = (selector) => document.querySelector(selector);

export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

export function fillRows(table, rows, cells) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map((row) => h("tr", {}, ...cells(row).map(cell))));
}

export function appendRows(table, rows, cells) {
  table.tBodies[0].append(...rows.map((row) => h("tr", {}, ...cells(row).map(cell))));
}

export function prependRows(table, rows, cells) {
  table.tBodies[0].prepend(...rows.map((row) => h("tr", {}, ...cells(row).map(cell))));
}

// A cell is text, a Node, or {text, num: true} for right-aligned figures.
function cell(value) {
  if (value instanceof Node) return h("td", {}, value);
  if (value && typeof value === "object") return h("td", { class: value.num ? "num" : "" }, value.text);
  return h("td", {}, value ?? "");
}

export const num = (text) => ({ text: String(text), num: true });
export const usd = (text) => num(`$${text}`);

export function confirmAction(message) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = message;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

let toastTimer = null;
export function toast(message, isError = false) {
  const node = $("#toast");
  node.textContent = message;
  node.className = isError ? "error" : "";
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 6000);
}

// Writes: confirm, run, report; errors shown, never thrown at the page.
export async function write(message, action, done) {
  if (!(await confirmAction(message))) return null;
  try {
    const result = await action();
    if (done) toast(done(result));
    return result;
  } catch (error) {
    toast(error.message, true);
    return null;
  }
}

export function utcDay(offsetDays = 0) {
  const day = new Date(Date.now() + offsetDays * 86_400_000);
  return day.toISOString().slice(0, 10);
}

export const time = (epoch) => new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19);
export const isoTime = (text) => (text ? text.replace("T", " ").slice(0, 19) : "");
