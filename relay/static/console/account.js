// The account view: balance, limits, the key's own controls, daily charts, the request log with
// CSV download, and the account's BYOK credentials. Everything from /v1/* and /byok/*.
import { get, query, request } from "./api.js";
import { dailyCharts } from "./charts.js";
import { $, appendRows, fillRows, h, num, time, toast, usd, utcDay, write } from "./ui.js";

let logAfter = null;

function filters() {
  return { from: $("#from").value, to: $("#to").value, model: $("#model-filter").value.trim() };
}

// The request log's range: from the first day's start to the end of the last (until is exclusive).
function logRange() {
  const { from, to, model } = filters();
  const until = new Date(Date.parse(`${to}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
  return { since: from, until, model };
}

async function loadBalance() {
  const page = await get("/v1/usage?limit=1");
  $("#balance").textContent = `$${page.balance_usd}`;
  $("#held").textContent = `$${page.held_usd}`;
  $("#available").textContent = `$${page.available_usd}`;
}

async function loadLimits() {
  const limits = await get("/v1/limits");
  $("#rpm").textContent = `${limits.requests_used} of ${limits.rpm_limit}`;
  $("#tpm").textContent = `${limits.tokens_used} of ${limits.tpm_limit}`;
}

async function loadKey() {
  const node = $("#keyinfo");
  try {
    const answer = await get("/v1/key");
    const key = answer.data ?? answer;
    const reset = key.reset_at ? `, resets ${key.reset_at.replace("T", " ").slice(0, 16)} UTC` : "";
    const budget = key.budget_usd
      ? `budget $${key.budget_usd} (${key.budget_period ?? "total"}): spent $${key.spent_usd ?? "0"}, remaining $${key.remaining_usd ?? "?"}${reset}`
      : "no budget of its own";
    const models = key.models?.length ? `models: ${key.models.join(", ")}` : "every model";
    const limits = [key.rpm ? `${key.rpm} RPM` : "", key.tpm ? `${key.tpm} TPM` : ""].filter(Boolean).join(", ");
    node.replaceChildren(h("p", {}, budget), h("p", {}, models), h("p", {}, limits || "the account's limits"));
  } catch (error) {
    // GET /v1/key may not be served by this relay yet: the account's limits apply.
    node.textContent = error.status === 404 ? "No budget or model allowlist of its own: the account's apply." : error.message;
  }
}

async function loadDaily() {
  const { from, to, model } = filters();
  const daily = await get(`/v1/usage/daily${query({ from, to, model })}`);
  dailyCharts($("#spend-chart"), $("#tokens-chart"), daily.data, daily.from, daily.to);
  const table = $("#by-model");
  fillRows(table, daily.models, (m) => [m.model, num(m.requests), num(m.errors), num(m.input_tokens),
    num(m.output_tokens), usd(m.cost_usd)]);
  const t = daily.totals;
  table.tFoot.replaceChildren(h("tr", {}, ...["Total", t.requests, t.errors, t.input_tokens, t.output_tokens, `$${t.cost_usd}`]
    .map((v, i) => h("th", { class: i ? "num" : "" }, v))));
  table.dataset.totalCost = t.cost_usd;
  table.dataset.loaded = "true";
}

const logCells = (r) => [time(r.created), r.route, r.model, r.source,
  num(`${(r.usage.input_tokens ?? 0) + (r.usage.cached_input_tokens ?? 0)} / ${r.usage.output_tokens ?? 0}`),
  usd(r.cost_usd), `${r.status} ${r.http_status}`, num(`${r.latency_ms} ms`), h("code", {}, r.id)];

async function loadLog(more = false) {
  const page = await get(`/v1/usage${query({ ...logRange(), limit: "50", after: more ? logAfter : "" })}`);
  (more ? appendRows : fillRows)($("#log"), page.data, logCells);
  logAfter = page.data.length ? page.data[page.data.length - 1].id : null;
  $("#log-more").hidden = !page.has_more;
  $("#log").dataset.loaded = "true";
}

async function downloadCsv() {
  // Fetched with the key in the header (a plain link would need the key in the URL), then saved.
  try {
    const response = await request("GET", `/v1/usage${query({ ...logRange(), format: "csv" })}`, { raw: true });
    const blob = await response.blob();
    const link = h("a", { href: URL.createObjectURL(blob), download: `usage-${filters().from}-${filters().to}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  } catch (error) {
    toast(error.message, true);
  }
}

async function loadByok() {
  const list = await get("/byok/credentials");
  fillRows($("#byok"), list.data, (c) => [num(c.id), c.provider, h("code", {}, c.masked_key), c.label ?? "", c.status,
    h("span", {},
      h("button", { type: "button", onclick: () => verifyCredential(c) }, "Verify"), " ",
      h("button", { type: "button", onclick: () => removeCredential(c) }, "Remove"))]);
  $("#byok").dataset.count = String(list.data.length);
}

async function verifyCredential(c) {
  const result = await write(`Check ${c.provider} key ${c.masked_key} against the provider now?`,
    () => request("POST", `/byok/credentials/${c.id}/verify`),
    (r) => `Key ${r.masked_key}: ${r.verification?.result ?? r.status}${r.verification?.detail ? ` (${r.verification.detail})` : ""}`);
  if (result) await loadByok();
}

async function removeCredential(c) {
  const result = await write(`Remove ${c.provider} key ${c.masked_key}? Requests under /byok/v1 stop using it.`,
    () => request("DELETE", `/byok/credentials/${c.id}`), () => `Removed key ${c.masked_key}.`);
  if (result) await loadByok();
}

async function addCredential(event) {
  event.preventDefault();
  const body = { provider: $("#byok-provider").value, api_key: $("#byok-key").value.trim() };
  if ($("#byok-base").value.trim()) body.base_url = $("#byok-base").value.trim();
  if ($("#byok-label").value.trim()) body.label = $("#byok-label").value.trim();
  const result = await write(`Store this ${body.provider} key (encrypted) for /byok/v1 requests?`,
    () => request("POST", "/byok/credentials", { body }), (r) => `Added ${r.provider} key ${r.masked_key}.`);
  if (result) {
    event.target.reset();
    await loadByok();
  }
}

export async function showAccount() {
  $("#account").hidden = false;
  $("#from").value = utcDay(-29);
  $("#to").value = utcDay(0);
  $("#range").addEventListener("submit", (event) => {
    event.preventDefault();
    Promise.all([loadDaily(), loadLog()]).catch((e) => toast(e.message, true));
  });
  $("#log-more").addEventListener("click", () => loadLog(true).catch((e) => toast(e.message, true)));
  $("#csv").addEventListener("click", downloadCsv);
  $("#byok-form").addEventListener("submit", addCredential);
  await Promise.all([loadBalance(), loadLimits(), loadKey(), loadDaily(), loadLog(), loadByok()]);
  document.body.dataset.view = "account";
}
