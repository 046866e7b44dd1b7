/*! chartlib v3.9.2 | MIT */
(function (root) {
  "use strict";
  var VERSION = "3.9.2";
  function extent(values) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < values.length; i++) {
      if (values[i] < lo) lo = values[i];
      if (values[i] > hi) hi = values[i];
    }
    return [lo, hi];
  }
  function scaleLinear(domain, range) {
    var d0 = domain[0], d1 = domain[1], r0 = range[0], r1 = range[1];
    return function (x) { return d1 === d0 ? r0 : r0 + (x - d0) * (r1 - r0) / (d1 - d0); };
  }
  function ticks(lo, hi, count) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count || 1)));
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
    return out;
  }
  function Chart(canvas, options) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.options = options || {};
    this.padding = this.options.padding || 24;
  }
  Chart.prototype.draw = function (labels, values) {
    var ctx = this.ctx, w = this.canvas.width, h = this.canvas.height, pad = this.padding;
    var ext = extent(values), y = scaleLinear([0, ext[1]], [h - pad, pad]);
    var x = scaleLinear([0, values.length], [pad, w - pad]), bw = (w - 2 * pad) / values.length;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = this.options.color || "#4a7bd0";
    for (var i = 0; i < values.length; i++) {
      ctx.fillRect(x(i) + 1, y(values[i]), bw - 2, h - pad - y(values[i]));
    }
    ctx.fillStyle = "#333";
    ticks(0, ext[1], 5).forEach(function (t) { ctx.fillText(String(t), 2, y(t)); });
    labels.forEach(function (label, i) { ctx.fillText(label, x(i), h - 4); });
    return this;
  };
  Chart.prototype.tooltip = function (labels, values) {
    var self = this;
    this.canvas.addEventListener("mousemove", function (event) {
      var i = Math.floor((event.offsetX - self.padding) / ((self.canvas.width - 2 * self.padding) / values.length));
      if (i >= 0 && i < values.length) self.canvas.title = labels[i] + ": " + values[i];
    });
    return this;
  };
  root.chartlib = { VERSION: VERSION, Chart: Chart, extent: extent, scaleLinear: scaleLinear, ticks: ticks };
})(typeof window !== "undefined" ? window : this);
/*! chartlib v4.1.0 | MIT */
(function (root) {
  "use strict";
  var VERSION = "4.1.0";
  function extent(values) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < values.length; i++) {
      if (values[i] < lo) lo = values[i];
      if (values[i] > hi) hi = values[i];
    }
    return [lo, hi];
  }
  function scaleLinear(domain, range) {
    var d0 = domain[0], d1 = domain[1], r0 = range[0], r1 = range[1];
    return function (x) { return d1 === d0 ? r0 : r0 + (x - d0) * (r1 - r0) / (d1 - d0); };
  }
  function ticks(lo, hi, count) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count || 1)));
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
    return out;
  }
  function Chart(canvas, options) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.options = options || {};
    this.padding = this.options.padding || 24;
  }
  Chart.prototype.render = function (labels, values) {
    var ctx = this.ctx, w = this.canvas.width, h = this.canvas.height, pad = this.padding;
    var ext = extent(values), y = scaleLinear([0, ext[1]], [h - pad, pad]);
    var x = scaleLinear([0, values.length], [pad, w - pad]), bw = (w - 2 * pad) / values.length;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = this.options.color || "#4a7bd0";
    for (var i = 0; i < values.length; i++) {
      ctx.fillRect(x(i) + 1, y(values[i]), bw - 2, h - pad - y(values[i]));
    }
    ctx.fillStyle = "#333";
    ticks(0, ext[1], 5).forEach(function (t) { ctx.fillText(String(t), 2, y(t)); });
    labels.forEach(function (label, i) { ctx.fillText(label, x(i), h - 4); });
    return this;
  };
  Chart.prototype.tooltip = function (labels, values) {
    var self = this;
    this.canvas.addEventListener("mousemove", function (event) {
      var i = Math.floor((event.offsetX - self.padding) / ((self.canvas.width - 2 * self.padding) / values.length));
      if (i >= 0 && i < values.length) self.canvas.title = labels[i] + ": " + values[i];
    });
    return this;
  };
  root.chartlib = { VERSION: VERSION, Chart: Chart, extent: extent, scaleLinear: scaleLinear, ticks: ticks };
})(typeof window !== "undefined" ? window : this);
/*! shop-reports v2.3.0 */
(function () {
  "use strict";
  function readTable(table) {
    var labels = [], values = [];
    var rows = table.querySelectorAll("tr");
    for (var i = 1; i < rows.length && i <= 20; i++) {
      var cells = rows[i].querySelectorAll("td");
      labels.push(cells[1].textContent);
      values.push(parseFloat(cells[4].textContent.replace(/,/g, "")));
    }
    return { labels: labels, values: values };
  }
  document.addEventListener("DOMContentLoaded", function () {
    var data = readTable(document.getElementById("report"));
    var canvas = document.getElementById("revenue-chart");
    canvas.width = 960;
    canvas.height = 320;
    new window.chartlib.Chart(canvas, { color: "#2f8f5b" }).render(data.labels, data.values).tooltip(data.labels, data.values);
  });
})();
