// The demo's chat page: plays one of the demo's people at a time through the local Bot API server.
"use strict";

const COLOURS = { admin: "#8e24aa", doctor: "#1e88e5", caregiver: "#43a047" };
const state = { setup: null, user: null, version: null, seen: {}, counts: {}, rendered: new Map() };
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const clock = (seconds) => `${new Date(seconds * 1000).toISOString().slice(11, 16)} UTC`;  // as the alerts say

async function post(path, body) {
  const response = await fetch(path, body instanceof FormData ? { method: "POST", body }
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

function toast(text) {
  if (!text) return;
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

function person(id) { return state.setup.people.find((p) => p.id === id); }

function buildSidebar() {
  const setup = state.setup;
  for (const p of setup.people) {
    const button = document.createElement("button");
    button.className = "person";
    button.id = `person-${p.role}`;
    button.dataset.user = p.id;
    button.innerHTML = `<span class="avatar" style="background:${COLOURS[p.role]}">${p.name.replace(/^Dr /, "")[0]}</span>`
      + `<span><span class="name"></span><span class="role">${p.role}</span></span><span class="badge" hidden></span>`;
    button.querySelector(".name").textContent = p.name;
    button.addEventListener("click", () => select(p.id));
    $("people").append(button);
  }
  for (const example of setup.examples) {
    const button = document.createElement("button");
    button.className = "example";
    button.dataset.file = example.file;
    button.title = `Send: ${example.title}`;
    button.innerHTML = `<img alt="" src="/examples/${example.file}"><span></span>`;
    button.querySelector("span").textContent = example.title.replace(/^Patient (\d+), slice (\d+): /, "$1/$2: ");
    button.addEventListener("click", () => post("/api/example", { user: state.user, file: example.file }).catch((e) => toast(e.message)));
    $("examples").append(button);
  }
  $("examples-hint").append(" ", setup.examples_trained_on
    ? "They come from the data the model was trained on, so they show how HemoWatch looks, not how well it finds bleeds."
    : "Four slices show how HemoWatch looks, not how well it finds bleeds.");
  $("patient-title").textContent = `Simulated patient ${setup.patient.id}`;
  $("scenario-hint").textContent = `The deterioration slowly lowers GCS and slows pulse and breathing while blood `
    + `pressure rises; alerts come once a vital has stayed out of range ${setup.rule_hold_s} s, and an urgent alert `
    + `no doctor acknowledges escalates after ${setup.escalate_after_s} s.`;
  for (const button of document.querySelectorAll("[data-scenario]")) {
    button.addEventListener("click", async () => {
      const answer = await post("/api/scenario", { scenario: button.dataset.scenario }).catch((e) => toast(e.message));
      if (answer) showScenario(answer.scenario);
    });
  }
  for (const command of [`/status ${setup.patient.id}`, "/patients", `/thresholds ${setup.patient.id}`, "/help"]) {
    const button = document.createElement("button");
    button.textContent = command;
    button.addEventListener("click", () => sendText(command));
    $("shortcuts").append(button, " ");
  }
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    if (text) { sendText(text); $("text").value = ""; }
  });
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("user", state.user);
    form.append("file", file, file.name);
    await post("/api/upload", form).catch((e) => toast(e.message));
    $("upload").value = "";
  });
}

function showScenario(scenario) {
  const words = { stable: "stable vitals", deterioration: "deteriorating (simulated)" };
  $("scenario").textContent = words[scenario] || scenario || "starting";
}

function sendText(text) { post("/api/send", { user: state.user, text }).catch((e) => toast(e.message)); }

function select(user) {
  state.user = user;
  state.version = null;
  state.rendered.clear();
  $("messages").replaceChildren();
  for (const button of document.querySelectorAll(".person")) {
    button.classList.toggle("selected", Number(button.dataset.user) === user);
  }
  const p = person(user);
  $("talking-as").textContent = `· you are ${p.name} (${p.role})`;
  refresh();
}

function messageElement(message) {
  const box = document.createElement("div");
  box.className = `msg ${message.from_bot ? "bot" : "user"}`;
  box.dataset.id = message.id;
  if (message.photo) {
    const img = document.createElement("img");
    img.src = `/api/file/${message.photo}`;
    img.alt = message.from_bot ? "picture from the bot" : "your picture";
    img.addEventListener("click", () => window.open(img.src, "_blank"));
    box.append(img);
  }
  if (message.document) {
    const doc = document.createElement("div");
    doc.className = "document";
    doc.textContent = `📄 ${message.document}`;
    box.append(doc);
  }
  if (message.text) {
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = message.text;
    box.append(text);
  }
  if (message.buttons.length) {
    const keyboard = document.createElement("div");
    keyboard.className = "keyboard";
    for (const row of message.buttons) {
      const line = document.createElement("div");
      line.className = "kb-row";
      for (const b of row) {
        const button = document.createElement("button");
        button.className = "inline-button";
        button.textContent = b.text;
        button.addEventListener("click", async () => {
          button.disabled = true;
          const answer = await post("/api/press", { user: state.user, message_id: message.id, data: b.data })
            .catch((e) => ({ text: e.message }));
          toast(answer.text);
          button.disabled = false;
        });
        line.append(button);
      }
      keyboard.append(line);
    }
    box.append(keyboard);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = message.edited ? `${clock(message.date)} · edited ${clock(message.edited)}` : clock(message.date);
  box.append(meta);
  return box;
}

function render(chat) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  let added = false;
  for (const message of chat.messages) {
    const signature = JSON.stringify(message);
    const known = state.rendered.get(message.id);
    if (known && known.signature === signature) continue;
    const element = messageElement(message);
    if (known) known.element.replaceWith(element);
    else { list.append(element); added = true; }
    state.rendered.set(message.id, { signature, element });
  }
  if (added || atBottom) list.scrollTop = list.scrollHeight;
  state.counts = chat.bot_messages;
  state.seen[state.user] = state.counts[state.user] || 0;
  for (const button of document.querySelectorAll(".person")) {
    const user = Number(button.dataset.user);
    const unread = (state.counts[user] || 0) - (state.seen[user] || 0);
    const badge = button.querySelector(".badge");
    badge.hidden = user === state.user || unread <= 0;
    badge.textContent = unread;
  }
  showScenario(chat.scenario);
}

async function fetchChat(user, version) {
  const query = version === null ? `user=${user}` : `user=${user}&version=${version}`;
  const response = await fetch(`/api/chat?${query}`);
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

async function refresh() {
  const user = state.user;
  const chat = await fetchChat(user, null).catch(() => null);
  if (chat && user === state.user) { render(chat); state.version = chat.version; }
}

async function follow() {
  for (;;) {
    const user = state.user;
    try {
      const chat = await fetchChat(user, state.version);
      if (user === state.user) { render(chat); state.version = chat.version; }
    } catch (error) {
      await sleep(1000);  // the demo is starting or stopping
    }
  }
}

async function start() {
  state.setup = await (await fetch("/api/setup")).json();
  buildSidebar();
  select(state.setup.people[0].id);
  follow();
}

start();
