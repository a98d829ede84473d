"use strict";
(() => {
  const data = JSON.parse(document.getElementById("crossent-data").textContent);
  const tip = document.getElementById("tip");
  let current = null;
  let pinned = false;
  const shown = (s) => s === "" ? "\u2205" : s.replace(/ /g, "\u2423")
    .replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/\r/g, "\u240d");
  const num = (x) => x === null ? Infinity : x;
  const prob = (p) => p === 0 ? "0" : p >= 0.001 ? p.toPrecision(3) : p.toExponential(2);
  const fixed = (x, digits) => Number.isFinite(x) ? x.toFixed(digits) : "\u221e";
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const code = (text, cls) => {
    const cell = el("td", cls);
    cell.append(el("code", "", shown(text)));
    return cell;
  };
  const row = (label, ...cells) => {
    const tr = el("tr");
    tr.append(el("th", "", label), ...cells);
    return tr;
  };
  const td = (cls, text) => el("td", cls, text);
  const spanOf = (node) => node instanceof HTMLSpanElement &&
    node.parentElement.classList.contains("heat") ? node : null;
  // A span's index among its text's spans, found by one walk over each text when first needed:
  // a search per hover would take milliseconds in a text of 100k tokens.
  const indices = new WeakMap();
  const indexOf = (span) => {
    if (!indices.has(span)) {
      Array.prototype.forEach.call(span.parentElement.children, (s, i) => indices.set(s, i));
    }
    return indices.get(span);
  };

  function tokenTip(entry) {
    const nats = num(entry[0]);
    const table = el("table");
    table.append(
      row("p", td("tip-p", prob(Math.exp(-nats)))),
      row("surprisal", td("tip-bits", fixed(nats / Math.LN2, 3) + " bits")),
      row("", td("tip-nats", fixed(nats, 3) + " nats")),
      row("rank", td("tip-rank", String(entry[1]))));
    const alternatives = el("table", "tip-alts");
    for (let i = 2; i < entry.length; i += 2) {
      const tr = el("tr", "tip-alt");
      tr.append(code(data.texts[entry[i]]), td("tip-alt-p", prob(entry[i + 1])));
      alternatives.append(tr);
    }
    return [table, el("div", "tip-head", "most likely next tokens"), alternatives];
  }

  function differenceTip(entry) {
    const [natsA, natsB] = [num(entry[0]), num(entry[1])];
    const a = entry[3] === null ? null : data.sets.a[entry[3]];
    const b = entry[4] === null ? null : data.sets.b[entry[4]];
    const top = (scores) => scores && scores.length > 2 ? code(data.texts[scores[2]]) : td("", "");
    const table = el("table");
    table.append(
      row("", el("th", "", "A"), el("th", "", "B")),
      row("p", td("tip-p-a", prob(Math.exp(-natsA))), td("tip-p-b", prob(Math.exp(-natsB)))),
      row("loss, nats", td("tip-nats-a", fixed(natsA, 3)), td("tip-nats-b", fixed(natsB, 3))),
      row("rank", td("tip-rank-a", a ? String(a[1]) : ""), td("tip-rank-b", b ? String(b[1]) : "")),
      row("top-1", top(a), top(b)));
    // Every number of a comparison is in nats (crossent.comparison), the KL named as there.
    const change = natsB - natsA;
    const summary = el("table");
    summary.append(
      row("B \u2212 A", td("tip-delta", (change > 0 ? "+" : "") + fixed(change, 3) + " nats")),
      row("KL(A || B)", td("tip-kl", fixed(entry[2], 4) + " nats")));
    return [table, summary];
  }

  function show(span) {
    const box = span.parentElement;
    const entry = data.sets[box.dataset.set][Number(box.dataset.first) + indexOf(span)];
    const title = el("div", "tip-text");
    title.append(el("code", "", shown(span.textContent)));
    tip.replaceChildren(title, ...(box.dataset.set === "d" ? differenceTip : tokenTip)(entry));
    tip.hidden = false;
    tip.style.left = "0px";  // measure the width the tooltip takes when it is not squeezed
    const rect = span.getBoundingClientRect();
    const width = document.documentElement.clientWidth;
    const left = Math.max(4, Math.min(rect.left, width - tip.offsetWidth - 4));
    const below = rect.bottom + 4 + tip.offsetHeight <= window.innerHeight;
    const top = below || rect.top < tip.offsetHeight + 4 ? rect.bottom + 4
      : rect.top - tip.offsetHeight - 4;
    tip.style.left = (left + window.scrollX) + "px";
    tip.style.top = (top + window.scrollY) + "px";
    if (current) current.classList.remove("cur");
    current = span;
    span.classList.add("cur");
  }

  function hide() {
    tip.hidden = true;
    if (current) current.classList.remove("cur");
    current = null;
    pinned = false;
  }

  document.addEventListener("mouseover", (event) => {
    const span = spanOf(event.target);
    if (span && !pinned) show(span);
  });
  document.addEventListener("mouseout", (event) => {
    if (!pinned && spanOf(event.target) && !spanOf(event.relatedTarget)) hide();
  });
  document.addEventListener("click", (event) => {
    const span = spanOf(event.target);
    if (!span || (pinned && span === current)) {
      hide();
      return;
    }
    show(span);
    pinned = true;
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      hide();
      return;
    }
    const box = event.target;
    if (!(box instanceof HTMLElement) || !box.classList.contains("heat")) return;
    const last = box.children.length - 1;
    let i = current && current.parentElement === box ? indexOf(current) : -1;
    if (event.key === "ArrowRight") i = Math.min(i + 1, last);
    else if (event.key === "ArrowLeft") i = Math.max(i - 1, 0);
    else return;
    event.preventDefault();
    if (i < 0) return;
    box.children[i].scrollIntoView({block: "nearest"});
    show(box.children[i]);
    pinned = true;
  });
})();
