// The Sluice console: a single page over the console's JSON API. No
// framework and nothing fetched from elsewhere: every element is built
// with textContent (never HTML from data), every control has a label,
// and everything works from the keyboard.

const main = document.getElementById("main");
const statusLine = document.getElementById("status");
let session = null;
let liveSource = null;

const NODE_TYPES = ["http", "transform", "wait", "postgres", "shell", "kubernetes", "workflow", "notify", "fail"];
const PHASES = ["Pending", "Queued", "Running", "Succeeded", "Failed", "Cancelled"];
const TRIGGERS = ["Manual", "Schedule", "Webhook", "Workflow"];
const LEVELS = ["debug", "info", "warn", "error"];

// h("tag.class", {attr: value, onclick: fn}, child, "text", …)
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const element = document.createElement(tag);
  if (classes.length) element.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "text") element.textContent = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

// Children for replaceChildren: arrays flattened, nothing for null/false.
function kids(...items) {
  return items.flat(Infinity).filter((item) => item !== null && item !== undefined && item !== false);
}

function svg(tag, attrs, ...children) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value);
  }
  for (const child of children) element.append(child);
  return element;
}

function say(message, isError) {
  statusLine.textContent = message || "";
  statusLine.classList.toggle("error", !!isError);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrfToken;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401 && path !== "/api/session") { session = null; showSignIn(); }
    throw new ApiError(response.status, (data && data.error) || response.statusText);
  }
  return data;
}

function time(value) {
  return value ? new Date(value).toLocaleString() : "";
}

function duration(start, end) {
  if (!start) return "";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function badge(phase) {
  return h(`span.badge.phase-${(phase || "none").toLowerCase()}`, { text: phase || "not run" });
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}

function parseHash() {
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const [path, search] = hash.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: Object.fromEntries(new URLSearchParams(search || "")) };
}

function page(title, ...children) {
  if (liveSource) { liveSource.close(); liveSource = null; }
  main.replaceChildren(...kids(h("h1", { text: title }), children));
  document.title = `${title} · Sluice`;
  main.focus();
}

// ---- sign-in ----

function showSignIn(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  const token = h("textarea", { id: "token", rows: 4, required: true, autocomplete: "off", spellcheck: "false" });
  const error = h("p.error", { role: "alert", id: "sign-in-error", text: message || "" });
  const form = h("form.card", {
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = "";
      try {
        session = await api("POST", "/api/session", { token: token.value.trim() });
        token.value = "";
        signedIn();
      } catch (failure) {
        error.textContent = failure.message;
      }
    },
  },
  h("label", { for: "token", text: "Kubernetes bearer token (or OIDC ID token)" }),
  token,
  h("p.hint", { text: "For example: kubectl create token <service-account> --duration=8h. The token is used once to sign in and is not stored." }),
  h("button", { type: "submit", id: "sign-in" }, "Sign in"),
  error);
  page("Sign in", form);
  token.focus();
}

function signedIn() {
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  document.getElementById("who").textContent = `Signed in as ${session.username}`;
  route();
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/api/session"); } catch (_) { /* the session may be gone already */ }
  session = null;
  showSignIn("Signed out.");
});

// ---- runs list ----

let namespacesCache = null;
async function namespaces() {
  if (!namespacesCache) namespacesCache = (await api("GET", "/api/namespaces")).namespaces;
  return namespacesCache;
}

function select(id, label, options, value, anyLabel) {
  const control = h("select", { id, name: id },
    anyLabel ? h("option", { value: "", text: anyLabel }) : null,
    options.map((option) => h("option", { value: option, text: option, selected: option === value })));
  return [h("label", { for: id, text: label }), control];
}

function field(id, label, attrs) {
  return [h("label", { for: id, text: label }), h("input", { id, name: id, ...attrs })];
}

function toLocalInput(value) {
  if (!value) return "";
  const date = new Date(value);
  return new Date(date - date.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

async function showRuns(params) {
  const readable = await namespaces();
  const form = h("form.filters", {
    "aria-label": "Filter runs",
    onsubmit: (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const local = (name) => data.get(name) ? new Date(data.get(name)).toISOString() : "";
      location.hash = `#/runs${query({
        namespace: data.get("namespace"), workflow: data.get("workflow"), phase: data.get("phase"),
        trigger: data.get("trigger"), from: local("from"), to: local("to"),
      })}`;
    },
  },
  ...select("namespace", "Namespace", readable, params.namespace, "All readable"),
  ...field("workflow", "Workflow", { type: "text", value: params.workflow || "" }),
  ...select("phase", "Phase", PHASES, params.phase, "Any"),
  ...select("trigger", "Trigger", TRIGGERS, params.trigger, "Any"),
  ...field("from", "Created from", { type: "datetime-local", value: toLocalInput(params.from) }),
  ...field("to", "Created before", { type: "datetime-local", value: toLocalInput(params.to) }),
  h("button", { type: "submit" }, "Filter"));
  const table = h("table.runs", {},
    h("caption", { text: readable.length ? `Runs in ${params.namespace || readable.join(", ")}` : "You may not read runs in any namespace" }),
    h("thead", {}, h("tr", {}, ["Run", "Namespace", "Workflow", "Phase", "Trigger", "Created", "Duration"].map((name) => h("th", { scope: "col", text: name })))));
  const body = h("tbody");
  table.append(body);
  const more = h("button", { type: "button", hidden: true }, "More runs");
  page("Runs", form, table, more);
  let cursor = params.cursor;
  const load = async () => {
    try {
      const result = await api("GET", `/api/runs${query({ ...params, cursor })}`);
      for (const run of result.runs) {
        const name = run.name || run.id;
        body.append(h("tr", {},
          h("td", {}, run.name ? h("a", { href: `#/runs/${encodeURIComponent(run.namespace)}/${encodeURIComponent(run.name)}`, text: name }) : name),
          h("td", { text: run.namespace }), h("td", { text: run.workflow }), h("td", {}, badge(run.phase)),
          h("td", { text: run.trigger }), h("td", { text: time(run.createdAt) }), h("td", { text: duration(run.startedAt, run.endedAt) })));
      }
      if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 7, text: "No runs match." })));
      cursor = result.nextCursor;
      more.hidden = !cursor;
      say("");
    } catch (failure) {
      say(failure.message, true);
    }
  };
  more.addEventListener("click", load);
  await load();
}

// ---- run detail ----

function nodeType(spec) {
  return NODE_TYPES.find((type) => spec && spec[type] !== undefined) || "node";
}

// The phase a node shows: its last attempt's, a forEach node's worst item.
function nodePhases(nodes) {
  const last = new Map();
  for (const node of nodes) {
    const previous = last.get(node.nodeId);
    if (!previous || node.attempt >= previous.attempt) last.set(node.nodeId, node);
  }
  const byNode = new Map();
  const rank = ["Failed", "Running", "Pending", "Cancelled", "Succeeded", "Skipped"];
  for (const node of last.values()) {
    const current = byNode.get(node.node);
    if (!current || rank.indexOf(node.phase) < rank.indexOf(current)) byNode.set(node.node, node.phase);
  }
  return byNode;
}

function drawGraph(graph, phases, onSelect) {
  const specs = (graph && Array.isArray(graph.nodes)) ? graph.nodes : [];
  const names = specs.map((spec) => spec.name);
  for (const name of phases.keys()) if (!names.includes(name)) { names.push(name); specs.push({ name }); }
  const edges = (graph && Array.isArray(graph.edges)) ? graph.edges : [];
  const depth = new Map(names.map((name) => [name, 0]));
  for (let pass = 0; pass < names.length; pass++) {
    let changed = false;
    for (const edge of edges) {
      const next = (depth.get(edge.from) ?? 0) + 1;
      if (depth.has(edge.to) && next > depth.get(edge.to)) { depth.set(edge.to, next); changed = true; }
    }
    if (!changed) break;
  }
  const rows = new Map();
  const position = new Map();
  for (const name of names) {
    const column = depth.get(name);
    const row = rows.get(column) || 0;
    rows.set(column, row + 1);
    position.set(name, { x: 10 + column * 200, y: 10 + row * 56 });
  }
  const width = 10 + (Math.max(0, ...depth.values()) + 1) * 200;
  const height = 10 + Math.max(1, ...rows.values()) * 56;
  const picture = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "group", "aria-label": "Workflow graph: nodes coloured by phase" });
  for (const edge of edges) {
    const from = position.get(edge.from), to = position.get(edge.to);
    if (!from || !to) continue;
    picture.append(svg("path", { class: "edge", d: `M${from.x + 160},${from.y + 20} C${from.x + 180},${from.y + 20} ${to.x - 20},${to.y + 20} ${to.x},${to.y + 20}` }));
  }
  for (const spec of specs) {
    const { x, y } = position.get(spec.name);
    const phase = phases.get(spec.name) || "none";
    const condition = spec.condition ? ` if ${spec.condition}` : "";
    const label = `${spec.name} (${nodeType(spec)}): ${phase === "none" ? "not run" : phase}${condition}`;
    const group = svg("g", {
      class: `node phase-${phase.toLowerCase()}`, tabindex: "0", role: "button", "aria-label": label,
      onclick: () => onSelect(spec.name),
      onkeydown: (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); onSelect(spec.name); } },
    },
    svg("title", {}, document.createTextNode(label)),
    svg("rect", { x, y, width: 160, height: 40, rx: 6 }));
    const text = svg("text", { x: x + 8, y: y + 17 });
    text.textContent = spec.name.length > 22 ? `${spec.name.slice(0, 21)}…` : spec.name;
    const type = svg("text", { x: x + 8, y: y + 33, class: "type" });
    type.textContent = nodeType(spec) + (spec.condition ? " · conditional" : "") + (spec.forEach ? " · forEach" : "");
    group.append(text, type);
    picture.append(group);
  }
  return h("div.graph", {}, picture);
}

// A collapsible JSON tree with search and copy.
function jsonViewer(id, title, value) {
  const tree = h("div.json", { id: `${id}-tree` });
  const build = (key, item) => {
    const keyText = key === null ? "" : `${key}: `;
    if (item !== null && typeof item === "object") {
      const entries = Array.isArray(item) ? item.map((child, index) => [index, child]) : Object.entries(item);
      const summary = h("summary", {}, h("span.key", { text: keyText }), Array.isArray(item) ? `[${entries.length}]` : `{${entries.length}}`);
      return h("details", { open: true }, summary, entries.map(([childKey, child]) => build(childKey, child)));
    }
    return h("div.leaf", {}, h("span.key", { text: keyText }), h(`span.value.${typeof item}`, { text: JSON.stringify(item) }));
  };
  tree.append(value === undefined || value === null ? h("p.hint", { text: "Nothing stored." }) : build(null, value));
  const search = h("input", {
    id: `${id}-search`, type: "search",
    oninput: () => {
      const wanted = search.value.toLowerCase();
      let hits = 0;
      for (const element of tree.querySelectorAll(".key, .value")) {
        const hit = wanted && element.textContent.toLowerCase().includes(wanted);
        element.classList.toggle("hit", !!hit);
        if (hit) {
          hits++;
          for (let parent = element.parentElement; parent && parent !== tree; parent = parent.parentElement) if (parent.tagName === "DETAILS") parent.open = true;
        }
      }
      count.textContent = wanted ? `${hits} found` : "";
    },
  });
  const count = h("span.hint", { "aria-live": "polite" });
  const copy = h("button", {
    type: "button", "aria-label": `Copy ${title}`,
    onclick: async () => {
      try { await navigator.clipboard.writeText(JSON.stringify(value, null, 2)); say(`${title} copied.`); } catch (_) { say("Copying is not allowed here.", true); }
    },
  }, "Copy");
  return h("section.viewer", { "aria-label": title, id },
    h("h3", { text: title }),
    h("div.tools", {}, h("label", { for: `${id}-search`, text: `Search ${title}` }), search, count, copy),
    tree);
}

async function showRun(namespace, name, params) {
  const level = params.level || "debug";
  let run;
  try {
    run = await api("GET", `/api/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}${query({ level })}`);
  } catch (failure) {
    if (failure.status === 404) {
      page(`Run ${name}`, h("p", { text: "This run is not in the history yet; the page reloads when it is." }));
      setTimeout(() => { if (location.hash.includes(`/runs/${namespace}/${name}`)) route(); }, 1500);
      return;
    }
    throw failure;
  }
  const phases = nodePhases(run.nodes);
  const detail = h("div.node-detail", { id: "node-detail", "aria-live": "polite" });
  const selectNode = (node) => {
    const attempts = run.nodes.filter((item) => item.node === node);
    detail.replaceChildren(...kids(h("h2", { text: `Node ${node}` }),
      attempts.length ? null : h("p.hint", { text: "This node did not run." }),
      attempts.map((attempt, index) => h("article.attempt", { "aria-label": `${attempt.nodeId} attempt ${attempt.attempt}` },
        h("h3", {}, `${attempt.nodeId}`, attempt.item !== null ? ` (item ${attempt.item})` : "", ` · attempt ${attempt.attempt} · `, badge(attempt.phase), ` · ${duration(attempt.startedAt, attempt.endedAt)}`),
        attempt.error ? h("p.error", { text: attempt.error }) : null,
        attempt.payloadNotes ? h("p.hint", { text: `Stored payloads were changed: ${JSON.stringify(attempt.payloadNotes)}` }) : null,
        jsonViewer(`input-${index}`, "Input", attempt.input),
        jsonViewer(`output-${index}`, "Output", attempt.output)))));
    detail.scrollIntoView({ block: "nearest" });
  };
  const actions = h("div.actions");
  if (run.phase === "Failed" || run.phase === "Cancelled") {
    actions.append(h("button", {
      type: "button", id: "resume",
      onclick: async () => {
        try {
          const created = await api("POST", `/api/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/resume`, {});
          say(`Resumed as ${created.name}.`);
          location.hash = `#/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(created.name)}`;
        } catch (failure) { say(failure.message, true); }
      },
    }, "Resume"));
  }
  if (["Pending", "Queued", "Running"].includes(run.phase)) {
    actions.append(h("button", {
      type: "button", id: "cancel",
      onclick: async () => {
        try { await api("POST", `/api/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/cancel`, {}); say("Cancelling."); } catch (failure) { say(failure.message, true); }
      },
    }, "Cancel"));
  }
  const failure = run.failure ? h("section.failure", { role: "alert", "aria-label": "Why the run failed" },
    h("h2", { text: "Why it failed" }),
    h("p", { text: run.failure.message }),
    run.failure.failedNode ? h("p", {}, "Failing node: ", h("button.link", { type: "button", onclick: () => selectNode(run.failure.failedNode) }, run.failure.failedNode)) : null,
    h("p", { text: `What to do: ${run.failure.advice}` })) : null;
  const timeline = h("table.timeline", {},
    h("caption", { text: "Attempts, retries and forEach items" }),
    h("thead", {}, h("tr", {}, ["Node", "Item", "Attempt", "Phase", "Started", "Duration"].map((name) => h("th", { scope: "col", text: name })))),
    h("tbody", {}, run.nodes.map((node) => h("tr", {},
      h("td", {}, h("button.link", { type: "button", onclick: () => selectNode(node.node) }, node.node)),
      h("td", { text: node.item ?? "" }), h("td", { text: node.attempt }), h("td", {}, badge(node.phase)),
      h("td", { text: time(node.startedAt) }), h("td", { text: duration(node.startedAt, node.endedAt) })))));
  const levelControl = h("select", {
    id: "log-level",
    onchange: () => { location.hash = `#/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}${query({ level: levelControl.value })}`; },
  }, LEVELS.map((item) => h("option", { value: item, text: `${item} and above`, selected: item === level })));
  const logs = h("ol.logs", { id: "logs", "aria-label": "Log lines" },
    run.logs.map((line) => h(`li.level-${line.level}`, {}, h("span.level", { text: line.level }), h("span.log-node", { text: line.nodeId || "" }), h("span.message", { text: line.message }))));
  page(`Run ${name}`,
    h("p.summary", {}, badge(run.phase), ` ${run.namespace} / ${run.workflow} · ${run.trigger} · created ${time(run.createdAt)} · ${duration(run.startedAt, run.endedAt)}`),
    actions, failure,
    h("h2", { text: "Graph" }), drawGraph(run.graph, phases, selectNode),
    detail,
    timeline,
    jsonViewer("run-input", "Run input", run.input),
    jsonViewer("run-output", "Run output", run.output),
    h("h2", { text: "Logs" }),
    h("div.tools", {}, h("label", { for: "log-level", text: "Log level" }), levelControl),
    logs.children.length ? logs : h("p.hint", { text: "No log lines at this level." }));
  if (run.failure && run.failure.failedNode) selectNode(run.failure.failedNode);
  if (["Pending", "Queued", "Running"].includes(run.phase)) follow(namespace, name);
}

// Live updates: the server says when the run changed; the page reloads it.
function follow(namespace, name) {
  liveSource = new EventSource(`/api/events${query({ namespace, run: name })}`);
  liveSource.addEventListener("run", () => {
    if (location.hash.includes(`/runs/${namespace}/${name}`)) route();
  });
}

// ---- workflows and the run-now form ----

function namespacePicker(params, target) {
  return namespaces().then((readable) => {
    const chosen = params.namespace || readable[0] || "";
    const form = h("form.filters", {
      "aria-label": "Choose a namespace",
      onsubmit: (event) => { event.preventDefault(); location.hash = `${target}${query({ namespace: form.elements.namespace.value })}`; },
    }, ...select("namespace", "Namespace", readable, chosen), h("button", { type: "submit" }, "Show"));
    return { chosen, form };
  });
}

async function showWorkflows(params) {
  const { chosen, form } = await namespacePicker(params, "#/workflows");
  if (!chosen) { page("Workflows", h("p", { text: "You may not read any namespace." })); return; }
  const result = await api("GET", `/api/workflows${query({ namespace: chosen })}`);
  const table = h("table", {},
    h("caption", { text: `Workflows in ${chosen}` }),
    h("thead", {}, h("tr", {}, ["Workflow", "Ready", "Last run", "Runs", "Success (7 days)", "p50 duration (7 days)", ""].map((name) => h("th", { scope: "col", text: name })))),
    h("tbody", {}, result.workflows.map((workflow) => h("tr", {},
      h("td", { text: workflow.name }),
      h("td", {}, workflow.ready === "True" ? "Ready" : `Not ready${workflow.readyReason ? ` (${workflow.readyReason})` : ""}`,
        workflow.validationErrors.length ? h("ul.errors", {}, workflow.validationErrors.map((issue) => h("li", { text: `${issue.path}: ${issue.message}` }))) : null),
      h("td", {}, workflow.lastRun && workflow.lastRun.name ? h("a", { href: `#/runs/${encodeURIComponent(chosen)}/${encodeURIComponent(workflow.lastRun.name)}`, text: `${workflow.lastRun.name} ${workflow.lastRun.phase || ""}` }) : ""),
      h("td", { text: workflow.runs ? Object.entries(workflow.runs).map(([key, value]) => `${key} ${value}`).join(", ") : "" }),
      h("td", { text: !workflow.stats7d ? "" : workflow.stats7d.successRate === null ? `no finished runs (${workflow.stats7d.runs} runs)` : `${Math.round(workflow.stats7d.successRate * 100)}% of ${workflow.stats7d.succeeded + workflow.stats7d.failed}` }),
      h("td", { text: workflow.stats7d && workflow.stats7d.p50DurationMs !== null ? `${(workflow.stats7d.p50DurationMs / 1000).toFixed(1)} s` : "" }),
      h("td", {}, h("a", { href: `#/workflows/${encodeURIComponent(chosen)}/${encodeURIComponent(workflow.name)}/run`, "aria-label": `Run ${workflow.name} now` }, "Run now"), " ",
        h("a", { href: `#/workflows/${encodeURIComponent(chosen)}/${encodeURIComponent(workflow.name)}/revisions`, "aria-label": `Revisions of ${workflow.name}` }, "Revisions"))))));
  page("Workflows", form, table);
}

// One control per top-level property of the input schema.
function schemaControls(schema, defaults) {
  const properties = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  return Object.entries(properties).map(([name, property]) => {
    const id = `input-${name}`;
    const initial = defaults && defaults[name] !== undefined ? defaults[name] : property.default;
    const label = h("label", { for: id }, name, required.has(name) ? " (required)" : "", property.description ? h("span.hint", { text: ` — ${property.description}` }) : null);
    let control;
    let read;
    if (Array.isArray(property.enum)) {
      control = h("select", { id, required: required.has(name) }, required.has(name) ? null : h("option", { value: "", text: "(none)" }),
        property.enum.map((option) => h("option", { value: JSON.stringify(option), text: String(option), selected: initial === option })));
      read = () => control.value === "" ? undefined : JSON.parse(control.value);
    } else if (property.type === "boolean") {
      control = h("input", { id, type: "checkbox", checked: initial === true });
      read = () => control.checked;
    } else if (property.type === "integer" || property.type === "number") {
      control = h("input", { id, type: "number", step: property.type === "integer" ? "1" : "any", min: property.minimum, max: property.maximum, required: required.has(name), value: initial ?? "" });
      read = () => control.value === "" ? undefined : Number(control.value);
    } else if (property.type === "string" || property.type === undefined && !property.properties) {
      control = h("input", { id, type: "text", required: required.has(name), minlength: property.minLength, maxlength: property.maxLength, pattern: property.pattern, value: initial ?? "" });
      read = () => control.value === "" ? undefined : control.value;
    } else {
      control = h("textarea", { id, rows: 4, required: required.has(name), spellcheck: "false" });
      control.value = initial === undefined ? "" : JSON.stringify(initial, null, 2);
      read = () => {
        if (control.value.trim() === "") return undefined;
        try { return JSON.parse(control.value); } catch (_) { throw new Error(`${name} is not valid JSON`); }
      };
    }
    return { name, element: h("div.field", {}, label, control), read };
  });
}

async function showRunNow(namespace, name) {
  const workflow = await api("GET", `/api/workflows/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`);
  const controls = schemaControls(workflow.inputSchema, workflow.inputDefaults);
  const error = h("p.error", { role: "alert" });
  const form = h("form.card", {
    "aria-label": `Input of ${name}`,
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = "";
      try {
        const input = {};
        for (const control of controls) {
          const value = control.read();
          if (value !== undefined) input[control.name] = value;
        }
        const created = await api("POST", `/api/workflows/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/runs`, { input });
        say(`Started ${created.name}.`);
        location.hash = `#/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(created.name)}`;
      } catch (failure) {
        error.textContent = failure.message;
      }
    },
  },
  controls.length ? controls.map((control) => control.element) : h("p.hint", { text: "This workflow takes no input fields." }),
  h("button", { type: "submit", id: "start-run" }, "Start run"),
  error);
  page(`Run ${name} now`, h("p", { text: `In namespace ${namespace}, as ${session.username}.` }), form);
}

// ---- connections ----

async function showConnections(params) {
  const { chosen, form } = await namespacePicker(params, "#/connections");
  if (!chosen) { page("Connections", h("p", { text: "You may not read any namespace." })); return; }
  const result = await api("GET", `/api/connections${query({ namespace: chosen })}`);
  const state = (condition) => condition ? `${condition.status === "True" ? "Yes" : "No"}${condition.reason ? ` (${condition.reason})` : ""}` : "unknown";
  const table = h("table", {},
    h("caption", { text: `Connections in ${chosen}` }),
    h("thead", {}, h("tr", {}, ["Connection", "Type", "Ready", "Verified", "Last probe", "OAuth2"].map((name) => h("th", { scope: "col", text: name })))),
    h("tbody", {}, result.connections.map((connection) => h("tr", {},
      h("td", { text: connection.name }),
      h("td", { text: connection.type }),
      h("td", { text: state(connection.ready), title: connection.ready ? connection.ready.message || "" : "" }),
      h("td", { text: connection.probed ? state(connection.verified) : "not probed", title: connection.verified ? connection.verified.message || "" : "" }),
      h("td", { text: connection.lastProbe ? time(connection.lastProbe) : "" }),
      h("td", {}, oauth2Cell(chosen, connection))))));
  page("Connections", form, table);
}

// The OAuth2 state of a connection, and Connect for the AuthorizationCode grant.
function oauth2Cell(namespace, connection) {
  const oauth2 = connection.oauth2;
  if (!oauth2) return h("span", { text: "" });
  const authorized = oauth2.authorized ? `${oauth2.authorized.status === "True" ? "authorized" : "not authorized"}${oauth2.authorized.reason ? ` (${oauth2.authorized.reason})` : ""}` : "unknown";
  const parts = [h("span", {
    text: `${oauth2.provider}, ${authorized}${oauth2.expiresAt ? `, token until ${time(oauth2.expiresAt)}` : ""}`,
    title: oauth2.authorized ? oauth2.authorized.message || "" : "",
  })];
  if (oauth2.grant === "AuthorizationCode") {
    const error = h("p.error", { role: "alert" });
    parts.push(h("button.connect", {
      type: "button",
      onclick: async () => {
        try {
          const answer = await api("POST", `/api/connections/${encodeURIComponent(namespace)}/${encodeURIComponent(connection.name)}/connect`);
          location.assign(answer.authorizationUrl);
        } catch (failure) {
          error.textContent = failure.message;
        }
      },
    }, "Connect"), error);
  }
  return h("span", {}, ...parts);
}

// ---- audit trail ----

async function showAudit(params) {
  const result = await api("GET", `/api/audit${query({ cursor: params.cursor })}`);
  const table = h("table", {},
    h("caption", { text: "Audit trail of the namespaces you may read" }),
    h("thead", {}, h("tr", {}, ["When", "Namespace", "Who", "Action", "Resource"].map((name) => h("th", { scope: "col", text: name })))),
    h("tbody", {}, result.entries.map((entry) => h("tr", {},
      h("td", { text: time(entry.createdAt) }),
      h("td", { text: entry.namespace }),
      h("td", { text: entry.user || "" }),
      h("td", { text: entry.action }),
      h("td", { text: [entry.resourceType, entry.resourceId].filter(Boolean).join(" ") })))));
  const next = result.nextCursor ? h("a", { href: `#/audit${query({ cursor: result.nextCursor })}` }, "Older entries") : null;
  page("Audit trail", table, next);
}

// ---- workflow revisions ----

async function showRevisions(namespace, name, params) {
  const base = `/api/workflows/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/revisions`;
  const result = await api("GET", `${base}${query({ from: params.from, to: params.to })}`);
  const numbers = result.revisions.map((revision) => String(revision.revision));
  const form = h("form.filters", {
    "aria-label": "Compare two revisions",
    onsubmit: (event) => { event.preventDefault(); location.hash = `#/workflows/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/revisions${query({ from: form.elements.from.value, to: form.elements.to.value })}`; },
  }, ...select("from", "From", numbers, params.from || numbers[1] || ""), ...select("to", "To", numbers, params.to || numbers[0] || ""), h("button", { type: "submit" }, "Compare"));
  const list = h("table", {},
    h("caption", { text: `Revisions of ${name}` }),
    h("thead", {}, h("tr", {}, ["Revision", "When", "By"].map((column) => h("th", { scope: "col", text: column })))),
    h("tbody", {}, result.revisions.map((revision) => h("tr", {},
      h("td", { text: String(revision.revision) }), h("td", { text: revision.createdAt ? time(revision.createdAt) : "" }), h("td", { text: revision.createdBy || "" })))));
  const diff = result.diff ? h("pre.diff", {}, result.diff.map((entry) => h(entry.op === "+" ? "ins" : entry.op === "-" ? "del" : "span", { text: `${entry.op} ${entry.line}\n` }))) : null;
  page(`Revisions of ${name}`, form, diff, list);
}

// ---- schedules ----

async function showSchedules(params) {
  const { chosen, form } = await namespacePicker(params, "#/schedules");
  if (!chosen) { page("Schedules", h("p", { text: "You may not read any namespace." })); return; }
  const result = await api("GET", `/api/schedules${query({ namespace: chosen })}`);
  const table = h("table", {},
    h("caption", { text: `Schedules in ${chosen}` }),
    h("thead", {}, h("tr", {}, ["Schedule", "Workflow", "When", "Time zone", "Next fires", "Recent fires", "State", ""].map((name) => h("th", { scope: "col", text: name })))),
    h("tbody", {}, result.schedules.map((schedule) => {
      const suspended = schedule.suspended;
      // Fire times come in the schedule's own time zone: show its wall clock.
      const zoned = (value) => value ? value.slice(0, 16).replace("T", " ") : "";
      return h("tr", {},
        h("td", { text: schedule.name }),
        h("td", { text: schedule.workflow || "" }),
        h("td", { text: schedule.cronInWords, title: schedule.cron }),
        h("td", { text: schedule.timeZone }),
        h("td", { text: schedule.invalid || schedule.nextFires.map(zoned).join(", ") }),
        h("td", { text: schedule.recentFires ? schedule.recentFires.map((fire) => `${zoned(fire.scheduledTime)} ${fire.phase || "Pending"}`).join(", ") || "none" : "runs not readable" }),
        h("td", { text: suspended ? "Suspended" : "Active" }),
        h("td", {}, h("button", {
          type: "button", "aria-label": `${suspended ? "Resume" : "Suspend"} ${schedule.name}`,
          onclick: async () => {
            try { await api("POST", `/api/schedules/${encodeURIComponent(chosen)}/${encodeURIComponent(schedule.name)}/suspend`, { suspend: !suspended }); route(); } catch (failure) { say(failure.message, true); }
          },
        }, suspended ? "Resume" : "Suspend")));
    })));
  page("Schedules", form, table);
}

// ---- routing ----

async function route() {
  if (!session) return;
  const { parts, params } = parseHash();
  try {
    if (parts[0] === "runs" && parts.length === 3) await showRun(parts[1], parts[2], params);
    else if (parts[0] === "workflows" && parts.length === 4 && parts[3] === "run") await showRunNow(parts[1], parts[2]);
    else if (parts[0] === "workflows" && parts.length === 4 && parts[3] === "revisions") await showRevisions(parts[1], parts[2], params);
    else if (parts[0] === "workflows") await showWorkflows(params);
    else if (parts[0] === "schedules") await showSchedules(params);
    else if (parts[0] === "connections") await showConnections(params);
    else if (parts[0] === "audit") await showAudit(params);
    else await showRuns(params);
  } catch (failure) {
    if (failure.status === 401) return;
    page(failure.status === 403 ? "Not allowed" : "Something went wrong", h("p.error", { role: "alert", id: "refused", text: failure.message }));
  }
}

window.addEventListener("hashchange", route);

(async () => {
  try {
    session = await api("GET", "/api/session");
    signedIn();
  } catch (_) {
    showSignIn();
  }
})();
