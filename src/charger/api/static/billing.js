// The billing page of one account: plain script, no build step, no third-party code.
//
// Which account and which token: from the address's fragment (#account=A&token=T — a
// fragment is never sent to a server nor kept in its logs), else from the sign-in form.
// The token is then kept in this tab's sessionStorage and wiped from the address bar;
// every API call sends it as `Authorization: Bearer`. Money is integer micro-units: it is
// formatted as text from the integers, never through floating point.
"use strict";

const MICROS = 1000000;
const KINDS = {
  call: "Phone call",
  sms_out: "Outgoing text message",
  sms_in: "Incoming text message",
  ring_through: "Ring-through connection attempt",
  fee: "Fee",
  topup: "Funds added",
  recharge: "Funds added (auto-recharge)",
  adjustment: "Adjustment",
  session_expired: "Phone call (closed without an end)",
};
const DIRECTIONS = { outbound: "Outbound", inbound: "Inbound", forwarded: "Forwarded" };
const STORE = window.sessionStorage;

const state = { account: "", token: "", currency: "", timeZone: "UTC", cursor: null };

function $(id) {
  return document.getElementById(id);
}

// 1234567 micros in USD -> "$1.234567"; whole cents keep two places: "$1.20".
function money(micros) {
  const negative = micros < 0;
  const abs = Math.abs(micros);
  const whole = Math.floor(abs / MICROS);
  let fraction = String(abs % MICROS).padStart(6, "0").replace(/0+$/, "");
  fraction = fraction.padEnd(2, "0");
  const grouped = String(whole).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const symbol = state.currency === "USD" ? "$" : "";
  const suffix = symbol ? "" : " " + state.currency;
  return (negative ? "-" : "") + symbol + grouped + "." + fraction + suffix;
}

function say(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

async function api(path, accept) {
  const response = await fetch(path, {
    headers: { Authorization: "Bearer " + state.token, Accept: accept || "application/json" },
    cache: "no-store",
  });
  if (response.status === 401) {
    STORE.removeItem("charger.token");
    showSignIn("That token is not accepted: sign in again.");
    throw new Error("unauthorized");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail || detail;
    } catch (ignored) {
      // not a problem document
    }
    throw new Error(detail);
  }
  return response;
}

function accountPath(suffix) {
  return "/v1/accounts/" + encodeURIComponent(state.account) + (suffix || "");
}

function showSignIn(text) {
  $("billing").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-account").value = state.account;
  say(text || "");
}

function localToday(timeZone) {
  // en-CA formats dates as YYYY-MM-DD, the form <input type=date> takes.
  return new Intl.DateTimeFormat("en-CA", { timeZone: timeZone }).format(new Date());
}

function daysBefore(isoDate, days) {
  const d = new Date(isoDate + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() - days);
  return d.toISOString().slice(0, 10);
}

function setText(id, text) {
  $(id).textContent = text;
}

function showAccount(account) {
  state.currency = account.currency;
  state.timeZone = account.time_zone;
  setText("account-name", account.account);
  const status = $("status");
  status.textContent = account.status;
  status.className = "badge " + account.status;
  status.hidden = false;
  setText("balance", money(account.balance_micros));
  setText("available", money(account.available_micros));
  setText("held", money(account.held_micros));
  setText("credit-limit", money(account.credit_limit_micros));
  setText("active-calls", String(account.active_calls));
  const recharge = account.auto_recharge;
  setText("auto-recharge-enabled", recharge.enabled ? "On" : "Off");
  setText("recharge-amount", recharge.enabled ? money(recharge.amount_micros) : "—");
  setText("recharge-threshold", recharge.enabled ? money(recharge.threshold_micros) : "—");
  setText("notify-email", account.notify_email || "—");
  const low = account.low_balance.threshold_micros;
  setText("low-balance", low ? money(low) : "Off");
}

function showRates(rates) {
  setText("rate-plan", rates.rate_plan + (rates.version ? " v" + rates.version : ""));
  setText("sms-out", money(rates.sms_outbound_per_segment_micros));
  setText("sms-in", money(rates.sms_inbound_per_segment_micros));
  setText("ring-through", money(rates.ring_through_attempt_micros));
  const body = $("voice-rates").querySelector("tbody");
  body.replaceChildren();
  for (const rate of rates.voice) {
    const row = body.insertRow();
    row.insertCell().textContent = DIRECTIONS[rate.direction] || rate.direction;
    row.insertCell().textContent = rate.prefix ? "+" + rate.prefix : "any number";
    row.insertCell().textContent = money(rate.per_minute_micros);
    row.insertCell().textContent = money(rate.connect_fee_micros);
    row.insertCell().textContent = rate.increments;
  }
}

function details(entry) {
  const doc = entry.document || {};
  if (doc.description) return doc.description;
  if (entry.kind === "call" || entry.kind === "session_expired") {
    const seconds = doc.quantity !== undefined ? doc.quantity + " s" : "";
    return [DIRECTIONS[doc.direction] || "", seconds].filter(Boolean).join(", ");
  }
  if (entry.kind === "sms_out" || entry.kind === "sms_in") {
    return doc.quantity + (doc.quantity === 1 ? " segment" : " segments");
  }
  return doc.reason || doc.reference || doc.item || "";
}

function addRows(entries) {
  const body = $("statement-rows").querySelector("tbody");
  for (const entry of entries) {
    const row = body.insertRow();
    row.dataset.entryId = entry.id;
    row.dataset.kind = entry.kind;
    const time = new Date(entry.time);
    row.insertCell().textContent = entry.local_date;
    row.insertCell().textContent = new Intl.DateTimeFormat("en-GB", {
      timeZone: state.timeZone,
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    }).format(time);
    row.insertCell().textContent = KINDS[entry.kind] || entry.kind;
    row.insertCell().textContent = details(entry);
    const amount = row.insertCell();
    amount.textContent = money(entry.amount_micros);
    amount.className = "num amount " + (entry.amount_micros < 0 ? "debit" : "credit");
    const after = row.insertCell();
    after.textContent = money(entry.balance_after_micros);
    after.className = "num balance-after";
  }
}

function statementQuery() {
  const params = new URLSearchParams({
    from: $("from").value,
    to: $("to").value,
    show: $("show").value,
  });
  return params;
}

async function loadStatement(more) {
  const table = $("statement-rows");
  table.dataset.state = "loading";
  const params = statementQuery();
  params.set("limit", "100");
  if (more && state.cursor) params.set("cursor", state.cursor);
  if (!more) table.querySelector("tbody").replaceChildren();
  try {
    const page = await (await api(accountPath("/statement?" + params))).json();
    addRows(page.entries);
    state.cursor = page.next_cursor;
    $("more").hidden = !page.next_cursor;
    $("statement-empty").hidden = table.querySelector("tbody").rows.length > 0;
    setText("statement-range", "Dates are days of " + page.time_zone + "; both ends included.");
    table.dataset.state = "ready";
    say("");
  } catch (error) {
    table.dataset.state = "error";
    say("Statement: " + error.message);
  }
}

async function downloadCsv() {
  try {
    const params = statementQuery();
    params.set("format", "csv");
    const blob = await (await api(accountPath("/statement?" + params), "text/csv")).blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "statement-" + state.account + "-" + $("from").value + "-" + $("to").value + ".csv";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    say("CSV: " + error.message);
  }
}

async function openAccount() {
  $("sign-in").hidden = true;
  try {
    const account = await (await api(accountPath())).json();
    showAccount(account);
    $("billing").hidden = false;
    const today = localToday(state.timeZone);
    if (!$("to").value) $("to").value = today;
    if (!$("from").value) $("from").value = daysBefore(today, 30);
    await loadStatement(false);
    try {
      showRates(await (await api(accountPath("/rates"))).json());
    } catch (error) {
      say("Rates: " + error.message);
    }
  } catch (error) {
    if (error.message !== "unauthorized") showSignIn("Account: " + error.message);
  }
}

function start() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  if (fragment.get("token")) STORE.setItem("charger.token", fragment.get("token"));
  if (fragment.get("account")) STORE.setItem("charger.account", fragment.get("account"));
  if (window.location.hash) {
    // The token must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  state.token = STORE.getItem("charger.token") || "";
  state.account = STORE.getItem("charger.account") || "";
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    state.account = $("sign-in-account").value.trim();
    state.token = $("sign-in-token").value.trim();
    STORE.setItem("charger.account", state.account);
    STORE.setItem("charger.token", state.token);
    $("sign-in-token").value = "";
    openAccount();
  });
  $("filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadStatement(false);
  });
  $("more").addEventListener("click", () => loadStatement(true));
  $("csv").addEventListener("click", downloadCsv);
  if (state.account && state.token) {
    openAccount();
  } else {
    showSignIn("");
  }
}

document.addEventListener("DOMContentLoaded", start);
