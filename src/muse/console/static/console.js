// Draws the charts whose Vega-Lite specs the server wrote into the page.
(function () {
  for (const [target, spec] of [["#alignment-chart", "alignment-spec"], ["#rate-chart", "rate-spec"]]) {
    const source = document.getElementById(spec);
    if (!source || !document.querySelector(target)) continue;
    vegaEmbed(target, JSON.parse(source.textContent), { actions: false, renderer: "svg" })
      .catch(function (error) { console.error("chart " + target + ": " + error); });
  }
})();
