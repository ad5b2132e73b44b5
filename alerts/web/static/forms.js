// Progressive help for the reader forms: query check, region suggestions,
// a preview of matching stories, and a time zone guess. The forms work
// without it. Text from the server is only ever set as textContent.
"use strict";

(function () {
  const CHECK_DELAY_MS = 300;
  const SUGGEST_DELAY_MS = 150;

  function debounce(fn, delay) {
    let timer = null;
    return function (...args) {
      clearTimeout(timer);
      timer = setTimeout(() => fn.apply(this, args), delay);
    };
  }

  async function getJson(path, params) {
    const url = new URL(path, window.location.origin);
    for (const [name, value] of params) url.searchParams.append(name, value);
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    // 429 carries {"limited": true, "message": ...}: the helpers say so and wait.
    if (!response.ok && response.status !== 429) throw new Error("HTTP " + response.status);
    return response.json();
  }

  function regionValues(form) {
    return Array.from(form.querySelectorAll("[data-region-autocomplete]"))
      .map((input) => input.value.trim())
      .filter(Boolean);
  }

  function setupQueryCheck(input) {
    const output = document.getElementById(input.dataset.queryCheck);
    if (!output) return;
    const check = debounce(async () => {
      const query = input.value;
      if (!query.trim()) {
        output.textContent = "";
        output.className = "check";
        input.removeAttribute("aria-invalid");
        return;
      }
      try {
        const result = await getJson("/api/query-check", [["q", query]]);
        if (input.value !== query) return; // typed on since: a newer check follows
        if (result.limited) {
          output.textContent = ""; // no verdict: the form still checks on submit
          output.className = "check";
          return;
        }
        if (result.ok) {
          output.textContent = "Looks good.";
          output.className = "check check--ok";
          input.removeAttribute("aria-invalid");
        } else {
          const position = result.position || 0;
          output.textContent =
            result.message + " (at character " + (position + 1) + ")\n" +
            query + "\n" + " ".repeat(position) + "^";
          output.className = "check check--error";
          input.setAttribute("aria-invalid", "true");
        }
        input.dispatchEvent(new CustomEvent("querychecked", { detail: result, bubbles: true }));
      } catch (error) {
        output.textContent = "";
      }
    }, CHECK_DELAY_MS);
    input.addEventListener("input", check);
  }

  function setupRegionSuggestions(input) {
    const list = document.getElementById(input.getAttribute("list"));
    if (!list) return;
    const suggest = debounce(async () => {
      const text = input.value.trim();
      if (text.length < 2) return;
      try {
        const regions = await getJson("/api/regions", [["q", text]]);
        list.replaceChildren(
          ...regions.map((region) => {
            const option = document.createElement("option");
            option.value = region.value;
            option.label = region.name + " — " + region.kind + (region.within ? " in " + region.within : "");
            return option;
          })
        );
      } catch (error) {
        list.replaceChildren();
      }
    }, SUGGEST_DELAY_MS);
    input.addEventListener("input", suggest);
  }

  function setupPreview(section) {
    const form = section.closest("form");
    const query = form.querySelector("[data-query-check]");
    const status = section.querySelector("[data-preview-status]");
    const list = section.querySelector("[data-preview-list]");
    const refresh = debounce(async () => {
      const regions = regionValues(form);
      if (!query.value.trim() && regions.length === 0) {
        section.hidden = true;
        return;
      }
      try {
        const params = [["q", query.value], ...regions.map((r) => ["region", r])];
        const result = await getJson("/api/preview", params);
        section.hidden = false;
        list.replaceChildren();
        if (!result.ok) {
          status.textContent = result.limited
            ? result.message
            : "No preview until the interest is valid.";
          return;
        }
        status.textContent = result.articles.length
          ? "From the last few days:"
          : "Nothing matched in the last few days; new stories will.";
        for (const article of result.articles) {
          const item = document.createElement("li");
          item.textContent = article.title + (article.published ? " (" + article.published + ")" : "");
          list.append(item);
        }
      } catch (error) {
        section.hidden = true;
      }
    }, 600);
    form.addEventListener("input", (event) => {
      if (event.target === query || event.target.matches("[data-region-autocomplete]")) refresh();
    });
    form.addEventListener("change", (event) => {
      if (event.target.matches("[data-region-autocomplete]")) refresh();
    });
  }

  function guessTimezone(select) {
    let zone = "";
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (error) {
      return;
    }
    if (select.value !== "UTC" || !zone) return; // keep what the reader chose
    if (Array.from(select.options).some((option) => option.value === zone)) select.value = zone;
  }

  function focusErrors() {
    const box = document.querySelector(".error-box");
    if (box) box.focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-query-check]").forEach(setupQueryCheck);
    document.querySelectorAll("[data-region-autocomplete]").forEach(setupRegionSuggestions);
    document.querySelectorAll("[data-preview]").forEach(setupPreview);
    document.querySelectorAll("[data-guess-timezone]").forEach(guessTimezone);
    focusErrors();
  });
})();
