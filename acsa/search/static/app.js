"use strict";
// The search page: everything is served by `acsa serve` itself (no network resources).
// For each result and each noun phrase p of the query, the image token r whose attention a[r, p] is highest
// (among tokens with a box: body-region stripes, window cells) is outlined in the phrase's colour; clicking
// a phrase shows its attention over every token as a heat map instead.
const COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#7f7f7f", "#bcbd22"];
const state = { response: null, phrase: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") {
      for (const [name, v] of Object.entries(value)) node.style.setProperty(name, v);
    }
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function boxStyle(box, colour) {
  return {
    left: 100 * box.left + "%", top: 100 * box.top + "%", "box-sizing": "border-box",
    width: 100 * (box.right - box.left) + "%", height: 100 * (box.bottom - box.top) + "%",
    "--c": colour,
  };
}

function overlays(result, tokens, phrases) {
  const layers = [];
  if (!result.attention) return layers;
  const boxed = tokens.map((t, r) => (t.box ? r : -1)).filter((r) => r >= 0);
  if (state.phrase !== null) {  // heat map of one phrase over every boxed token
    const weights = result.attention[state.phrase];
    const top = Math.max(...boxed.map((r) => weights[r]));
    const low = Math.min(...boxed.map((r) => weights[r]));
    for (const r of boxed) {  // opacity from the token's rank between the phrase's lowest and highest
      const style = boxStyle(tokens[r].box, COLOURS[state.phrase % COLOURS.length]);
      style.opacity = (0.4 * (weights[r] - low) / Math.max(top - low, 1e-9)).toFixed(3);
      layers.push(el("div", { class: "heat", style, "data-token": tokens[r].name }));
    }
    return layers;
  }
  const perToken = {};  // phrases already drawn on a token: their boxes nest, their tags stack
  phrases.forEach((phrase, p) => {  // each phrase's best token, outlined
    const weights = result.attention[p];
    let best = boxed[0];
    for (const r of boxed) if (weights[r] > weights[best]) best = r;
    if (best === undefined) return;
    const colour = COLOURS[p % COLOURS.length];
    const nth = perToken[best] = (perToken[best] ?? -1) + 1;
    const style = boxStyle(tokens[best].box, colour);
    style["border-width"] = "2px";
    style.margin = 3 * nth + "px";  // nested inside the earlier phrases' boxes on this token
    style.width = `calc(${style.width} - ${6 * nth}px)`;
    style.height = `calc(${style.height} - ${6 * nth}px)`;
    style["--tag-top"] = 13 * nth + "px";
    const box = el("div", { class: "box", style,
                            "data-phrase": phrase, "data-token": tokens[best].name,
                            title: `${phrase}: ${tokens[best].name} (a = ${weights[best].toFixed(2)})` },
                   el("span", { class: "tag", style: { "--c": colour } }, phrase));
    layers.push(box);
  });
  return layers;
}

function render() {
  const response = state.response;
  const results = document.getElementById("results");
  const chips = document.getElementById("phrases");
  results.replaceChildren();
  chips.replaceChildren();
  if (!response) return;
  response.phrases.forEach((phrase, p) => {
    const chip = el("span", { class: "chip" + (state.phrase === p ? " active" : ""),
                              style: { "--c": COLOURS[p % COLOURS.length] }, role: "button",
                              title: "show this phrase's attention on every token" }, phrase);
    chip.addEventListener("click", () => { state.phrase = state.phrase === p ? null : p; render(); });
    chips.append(chip);
  });
  response.results.forEach((result, i) => {
    const frame = el("div", { class: "frame" },
                     el("img", { src: result.url, alt: result.key, loading: "lazy" }),
                     ...overlays(result, response.tokens, response.phrases));
    const local = result.local === null ? "–" : result.local.toFixed(3);
    const scores = el("table", { class: "scores" },
      el("tr", {}, el("td", {}, "fused"), el("td", {}, result.fused.toFixed(3))),
      el("tr", {}, el("td", {}, "global"), el("td", {}, result.global.toFixed(3))),
      el("tr", {}, el("td", {}, "local"), el("td", {}, local)));
    results.append(el("figure", { class: "result", "data-rank": String(i + 1) }, frame,
      el("figcaption", {}, el("span", { class: "rank" }, `#${i + 1} `),
         el("span", { class: "path" }, result.key), scores)));
  });
}

async function search(event) {
  if (event) event.preventDefault();
  const query = document.getElementById("query").value;
  const k = document.getElementById("top-k").value || "12";
  const status = document.getElementById("status");
  status.textContent = "searching…";
  const params = new URLSearchParams({ q: query, k });
  try {
    const reply = await fetch("/api/search?" + params.toString());
    const body = await reply.json();
    if (!reply.ok) {
      showError(body.error || `error ${reply.status}`);
      state.response = null;
      status.textContent = "";
    } else {
      showError("");
      state.response = body;
      state.phrase = null;
      status.textContent = `${body.results.length} results in ${(1000 * body.seconds).toFixed(0)} ms ` +
                           `(fused = global + ${body.fusion_weight} × local)`;
      const url = new URL(window.location);
      url.searchParams.set("q", query);
      history.replaceState(null, "", url);
    }
  } catch (err) {
    showError("the server did not answer: " + err);
    status.textContent = "";
  }
  render();
}

async function start() {
  document.getElementById("search-form").addEventListener("submit", search);
  try {
    const info = await (await fetch("/api/info")).json();
    document.getElementById("info").textContent =
      `${info.images} images indexed · global search ${info.global_search} · model ${info.model.slice(0, 12)}`;
  } catch (err) {
    showError("the server did not answer: " + err);
  }
  const initial = new URL(window.location).searchParams.get("q");
  if (initial) {
    document.getElementById("query").value = initial;
    search();
  }
}

start();
