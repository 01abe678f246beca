// The documentation page's catalog: loaded from GET /v1/models, searchable by name or alias,
// filterable by provider and mode, sortable by price. Plain DOM, no build step; rows are built
// with textContent only (a model name is data, never markup).
(function () {
  "use strict";
  var table = document.getElementById("catalog");
  var body = table.querySelector("tbody");
  var search = document.getElementById("search");
  var provider = document.getElementById("provider");
  var mode = document.getElementById("mode");
  var sort = document.getElementById("sort");
  var count = document.getElementById("count");
  var models = [];
  var LABELS = ["Model", "Provider", "Mode", "Input", "Cached input", "Output", "Image in / cached / out"];

  function price(value) { return value === undefined || value === null ? "\u2014" : "$" + value; }

  function cells(m) {
    var p = m.pricing_per_1m || {};
    var image = p.image_input === undefined ? "\u2014" :
      price(p.image_input) + " / " + price(p.image_cached_input || p.image_input) + " / " + price(p.image_output);
    return [m.id, m.owned_by, m.mode.replace(/_/g, " "), price(p.input), price(p.cached_input),
            m.mode === "embedding" ? "\u2014" : price(p.output), image];
  }

  function row(m) {
    var tr = document.createElement("tr");
    tr.dataset.model = m.id;
    cells(m).forEach(function (text, i) {
      var td = document.createElement("td");
      td.dataset.label = LABELS[i];
      if (i === 0) {
        var code = document.createElement("code");
        code.textContent = text;
        td.appendChild(code);
        if (m.aliases && m.aliases.length) {
          var aliases = document.createElement("div");
          aliases.className = "aliases";
          aliases.textContent = "also: " + m.aliases.join(", ");
          td.appendChild(aliases);
        }
        (m.pricing_tiers || []).forEach(function (tier) {  // long-context prices (#16)
          var note = document.createElement("div");
          note.className = "aliases";
          note.textContent = "above " + tier.above_input_tokens.toLocaleString("en-US") + " input tokens: " +
            price(tier.pricing_per_1m.input) + " in / " + price(tier.pricing_per_1m.output) + " out";
          td.appendChild(note);
        });
      } else {
        td.textContent = text;
        if (i >= 3) td.className = "num";
      }
      tr.appendChild(td);
    });
    return tr;
  }

  function number(m, key) {
    var value = (m.pricing_per_1m || {})[key];
    return value === undefined ? Infinity : parseFloat(value);
  }

  function render() {
    var q = search.value.trim().toLowerCase();
    var shown = models.filter(function (m) {
      var names = [m.id].concat(m.aliases || []).join(" ").toLowerCase();
      return (!q || names.indexOf(q) >= 0) && (!provider.value || m.owned_by === provider.value) &&
        (!mode.value || m.mode === mode.value);
    });
    var parts = sort.value.split(":");
    if (parts[0] !== "name") {
      var sign = parts[1] === "desc" ? -1 : 1;
      shown.sort(function (a, b) { return sign * (number(a, parts[0]) - number(b, parts[0])) || a.id.localeCompare(b.id); });
    }
    body.replaceChildren.apply(body, shown.map(row));
    count.textContent = shown.length + " of " + models.length + " models";
  }

  function options(select, values) {
    values.forEach(function (v) {
      var o = document.createElement("option");
      o.value = v;
      o.textContent = v.replace(/_/g, " ");
      select.appendChild(o);
    });
  }

  function unique(key) {
    return models.map(function (m) { return m[key]; }).filter(function (v, i, all) { return all.indexOf(v) === i; }).sort();
  }

  fetch("/v1/models", { headers: { Accept: "application/json" } })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(function (page) {
      models = page.data;
      options(provider, unique("owned_by"));
      options(mode, unique("mode"));
      [search, provider, mode, sort].forEach(function (el) { el.addEventListener("input", render); });
      render();
      table.dataset.loaded = "true";
    })
    .catch(function (e) { count.textContent = "Could not load the live catalog (" + e.message + "); showing the page's copy."; });
})();
