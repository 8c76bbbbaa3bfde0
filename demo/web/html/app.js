// Shop frontend: talks to the api through nginx at /api/.
"use strict";

const state = { token: sessionStorage.getItem("shop-token") };
const $ = (sel) => document.querySelector(sel);
const money = (cents) => (cents / 100).toFixed(2);

function say(text, isError) {
  const el = $("#status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const resp = await fetch("/api" + path, { ...options, headers });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || resp.status + " " + resp.statusText);
  return body;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  try {
    const body = await api("/login", {
      method: "POST",
      body: JSON.stringify(Object.fromEntries(form.entries())),
    });
    state.token = body.token;
    sessionStorage.setItem("shop-token", body.token);
    say("signed in as " + form.get("username") + " (" + form.get("tenant") + ")");
  } catch (err) {
    say("sign-in failed: " + err.message, true);
  }
});

$("#search").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = new FormData(ev.target).get("q");
  try {
    const body = await api("/products?limit=20&q=" + encodeURIComponent(q));
    const tbody = $("#products");
    tbody.replaceChildren();
    for (const p of body.items) {
      const row = document.createElement("tr");
      cell(row, p.sku);
      cell(row, p.name);
      cell(row, money(p.price_cents));
      const btn = document.createElement("button");
      btn.textContent = "Order 1";
      btn.addEventListener("click", async () => {
        try {
          const order = await api("/orders", {
            method: "POST",
            body: JSON.stringify({ product_id: p.id, quantity: 1 }),
          });
          say("order #" + order.id + " created");
        } catch (err) {
          say("order failed: " + err.message, true);
        }
      });
      cell(row, "").appendChild(btn);
      tbody.appendChild(row);
    }
    say(body.items.length + " products" + (body.cached ? " (cached)" : ""));
  } catch (err) {
    say("search failed: " + err.message, true);
  }
});

$("#report").addEventListener("click", async () => {
  try {
    const body = await api("/reports/sales?days=30");
    const tbody = $("#sales");
    tbody.replaceChildren();
    for (const d of body.days) {
      const row = document.createElement("tr");
      cell(row, d.day);
      cell(row, d.orders);
      cell(row, d.units);
      cell(row, money(d.revenue_cents));
      tbody.appendChild(row);
    }
  } catch (err) {
    say("report failed: " + err.message, true);
  }
});

api("/health")
  .then(() => say(state.token ? "api is up; signed in" : "api is up; sign in (password: demo)"))
  .catch((err) => say("api unreachable: " + err.message, true));
