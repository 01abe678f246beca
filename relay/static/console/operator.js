// The operator view: live traffic, accounts (create, top up, tier, limits, keys), pool health and
// margin. Everything from /admin/*, which answers only to the admin key.
import { get, query, request } from "./api.js";
import { liveChart } from "./charts.js";
import { $, appendRows, fillRows, h, isoTime, num, prependRows, time, toast, usd, utcDay, write } from "./ui.js";

const LIVE_EVERY_MS = 2000;
let accountsAfter = null;
let selected = null;

const enc = encodeURIComponent;

const accountCells = (a) => [a.name, a.tier, num(`${a.rpm_limit ?? "tier"} / ${a.tpm_limit ?? "tier"}`),
  usd(a.balance_usd), usd(a.held_usd), num(a.requests), usd(a.spend_usd),
  h("button", { type: "button", onclick: () => select(a.name) }, "Open")];

async function loadAccounts(more = false) {
  const page = await get(`/admin/overview${query({ limit: "100", after: more ? String(accountsAfter) : "" })}`);
  const table = $("#accounts");
  (more ? appendRows : fillRows)(table, page.data, accountCells);
  nameRows(table);
  accountsAfter = page.next_after;
  $("#accounts-more").hidden = !page.has_more;
  if (!more) await pinSelected();
  table.dataset.loaded = "true";
}

function nameRows(table) {
  [...table.tBodies[0].rows].forEach((row) => { row.dataset.account = row.cells[0].textContent; });
}

// The open account's row stays in the table, first, whichever page of accounts it is on.
async function pinSelected() {
  const table = $("#accounts");
  if (!selected || [...table.tBodies[0].rows].some((row) => row.dataset.account === selected)) return;
  const found = await get(`/admin/overview${query({ name: selected })}`);
  prependRows(table, found.data, accountCells);
  nameRows(table);
}

async function findAccount(event) {
  event.preventDefault();
  await select($("#find-name").value.trim());
}

function newIdempotencyKey() {
  $("#topup-idem").value = crypto.randomUUID();
}

async function select(name) {
  const account = await get(`/admin/accounts/${enc(name)}`);  // an unknown name stops here (404)
  selected = name;
  $("#detail").hidden = false;
  $("#detail-name").textContent = name;
  $("#new-key").hidden = true;
  $("#tier-select").value = account.tier;
  $("#limit-rpm").value = account.rpm_limit ?? "";
  $("#limit-tpm").value = account.tpm_limit ?? "";
  newIdempotencyKey();
  await Promise.all([loadKeys(), loadDetailUsage(), pinSelected()]);
  $("#detail").scrollIntoView();
}

async function loadKeys() {
  const keys = await get(`/admin/accounts/${enc(selected)}/keys`);
  fillRows($("#keys"), keys, (k) => [num(k.id), h("code", {}, k.prefix), k.label ?? "", isoTime(k.created_at),
    isoTime(k.last_used_at), isoTime(k.revoked_at),
    k.revoked_at ? "" : h("button", { type: "button", onclick: () => revokeKey(k) }, "Revoke")]);
}

async function loadDetailUsage() {
  const usage = await get(`/admin/accounts/${enc(selected)}/usage`);
  fillRows($("#detail-usage"), usage.data.slice(0, 20), (r) => [time(r.created), r.model, r.source, r.status,
    usd(r.cost_usd), h("code", {}, r.id)]);
  $("#detail-usage").dataset.count = String(usage.totals.requests);
}

async function refreshAccount() {
  await Promise.all([loadAccounts(), loadDetailUsage()]);
}

async function createAccount(event) {
  event.preventDefault();
  const name = $("#new-account").value.trim();
  const tier = $("#new-tier").value;
  const created = await write(`Create account ${name} (${tier})?`,
    () => request("POST", "/admin/accounts", { body: { name, tier } }), (a) => `Created account ${a.name}.`);
  if (created) {
    event.target.reset();
    await loadAccounts();
    await select(created.name);
  }
}

async function topUp(event) {
  event.preventDefault();
  const amount = $("#topup-amount").value.trim();
  const note = $("#topup-note").value.trim();
  // The same Idempotency-Key until the amount or account changes: a double submit or a retry
  // after a lost answer is applied once (the relay answers the original top-up, "replayed").
  const idem = $("#topup-idem").value.trim();
  const result = await write(`Top up ${selected} by $${amount}?`,
    () => request("POST", `/admin/accounts/${enc(selected)}/topup`, { body: note ? { amount_usd: amount, note } : { amount_usd: amount }, idempotent: idem }),
    (r) => (r.replayed ? `Already applied (same idempotency key): balance $${r.balance_usd}.` : `Topped up $${r.topup_usd}: balance $${r.balance_usd}.`));
  if (result) {
    $("#topup-result").textContent = result.replayed
      ? `Already applied: entry ${result.entry_id}; balance $${result.balance_usd}`
      : `Entry ${result.entry_id}: +$${result.topup_usd}; balance $${result.balance_usd}`;
    await loadAccounts();
  }
}

async function setTier(event) {
  event.preventDefault();
  const tier = $("#tier-select").value;
  const done = await write(`Set ${selected}'s tier to ${tier}?`,
    () => request("PUT", `/admin/accounts/${enc(selected)}/tier`, { body: { tier } }), (a) => `${a.name} is ${a.tier}.`);
  if (done) await loadAccounts();
}

async function setLimits() {
  const rpm = $("#limit-rpm").value.trim() || "none";
  const tpm = $("#limit-tpm").value.trim() || "none";
  const done = await write(`Set ${selected}'s limits to ${rpm} RPM and ${tpm} TPM ('none': the tier's)?`,
    () => request("PUT", `/admin/accounts/${enc(selected)}/limits`, { body: { rpm, tpm } }),
    (a) => `${a.name}: ${a.rpm_limit ?? "tier"} RPM, ${a.tpm_limit ?? "tier"} TPM.`);
  if (done) await loadAccounts();
}

async function createKey(event) {
  event.preventDefault();
  const label = $("#key-label").value.trim();
  const created = await write(`Create a new key for ${selected}?`,
    () => request("POST", `/admin/accounts/${enc(selected)}/keys`, { body: label ? { label } : {} }),
    () => "Key created: copy it now, it is not shown again.");
  if (created) {
    $("#new-key-value").textContent = created.key;  // shown once: never stored by the console
    $("#new-key").hidden = false;
    event.target.reset();
    await loadKeys();
  }
}

async function revokeKey(k) {
  const done = await write(`Revoke key ${k.prefix}… (id ${k.id})? Requests with it are refused from now on.`,
    () => request("DELETE", `/admin/keys/${k.id}`), () => `Revoked key ${k.id}.`);
  if (done) await loadKeys();
}

async function loadPool() {
  const pool = await get("/admin/pool");
  fillRows($("#pool"), pool, (c) => [num(c.id), c.provider, h("code", {}, c.masked_key), c.label ?? "",
    h("span", { class: c.status === "active" ? "ok" : "bad" }, c.failure_reason ? `${c.status}: ${c.failure_reason}` : c.status)]);
}

const marginCells = (by) => (r) => [r[by], r.source, num(r.requests), usd(r.revenue_usd), usd(r.upstream_cost_usd), usd(r.margin_usd)];

let marginRange = null;
let marginAfter = null;

const totalsRow = (label, t) => h("tr", {}, ...[label, "", t.requests, `$${t.revenue_usd}`, `$${t.upstream_cost_usd}`, `$${t.margin_usd}`]
  .map((v, i) => h("th", { class: i > 1 ? "num" : "" }, v)));

async function loadMargin() {
  marginRange = { from: $("#margin-from").value, to: $("#margin-to").value };
  const report = await get(`/admin/margin${query({ ...marginRange, by: "model" })}`);
  fillRows($("#margin-model"), report.data, marginCells("model"));
  $("#margin-model").tFoot.replaceChildren(totalsRow("Total", report.totals));
  await loadMarginAccounts();
}

// By account: pages of 100 accounts in id order ("More" appends the next); the range's totals
// are the by-model table's.
async function loadMarginAccounts(more = false) {
  const after = more ? String(marginAfter) : "";
  const page = await get(`/admin/margin${query({ ...marginRange, by: "account", limit: "100", after })}`);
  const table = $("#margin-account");
  (more ? appendRows : fillRows)(table, page.data, marginCells("account"));
  const shown = new Set([...table.tBodies[0].rows].map((row) => row.cells[0].textContent)).size;
  table.tFoot.replaceChildren(h("tr", {}, h("th", { colspan: "6" },
    `${shown} account${shown === 1 ? "" : "s"} shown${page.has_more ? ", more follow" : ""}; totals under By model`)));
  marginAfter = page.next_after;
  $("#margin-account-more").hidden = !page.has_more;
  table.dataset.accounts = String(shown);
}

async function pollLive() {
  try {
    const live = await get("/admin/stats/live");
    const last = live.series[live.series.length - 1];
    $("#live-rps").textContent = last ? last.requests_per_s.toFixed(2) : "…";
    $("#live-eps").textContent = last ? last.errors_per_s.toFixed(2) : "…";
    $("#live-total").textContent = String(live.requests_total);
    $("#live-errors").textContent = String(live.errors_total);
    if (live.series.length) liveChart($("#live-chart"), live.series);
  } catch (error) {
    toast(error.message, true);
  }
}

export async function showOperator() {
  $("#operator").hidden = false;
  $("#margin-from").value = utcDay(-29);
  $("#margin-to").value = utcDay(0);
  $("#create-account").addEventListener("submit", createAccount);
  $("#find-account").addEventListener("submit", (e) => findAccount(e).catch((err) => toast(err.message, true)));
  $("#accounts-more").addEventListener("click", () => loadAccounts(true).catch((e) => toast(e.message, true)));
  $("#topup").addEventListener("submit", topUp);
  $("#topup-amount").addEventListener("input", newIdempotencyKey);
  $("#tier").addEventListener("submit", setTier);
  $("#set-limits").addEventListener("click", setLimits);
  $("#create-key").addEventListener("submit", createKey);
  $("#detail-refresh").addEventListener("click", () => refreshAccount().catch((e) => toast(e.message, true)));
  $("#margin-account-more").addEventListener("click", () => loadMarginAccounts(true).catch((e) => toast(e.message, true)));
  $("#margin-range").addEventListener("submit", (event) => {
    event.preventDefault();
    loadMargin().catch((e) => toast(e.message, true));
  });
  await Promise.all([loadAccounts(), loadPool(), loadMargin(), pollLive()]);
  setInterval(pollLive, LIVE_EVERY_MS);
  document.body.dataset.view = "operator";
}
