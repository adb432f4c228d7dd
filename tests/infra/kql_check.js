// Compile KQL queries with Microsoft's Kusto parser (@kusto/language-service-next) against the
// Application Insights schema, as the portal would before running them.
//
// stdin:  [{"name": "...", "query": "..."}, ...]
// stdout: [{"name": "...", "diagnostics": [{"code", "severity", "message", "start", "length"}]}, ...]
// Exits 0 whenever it could check the queries; the caller decides what a diagnostic means.

"use strict";

require("@kusto/language-service-next/bridge.min.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.min.js");

const Language = global.Kusto.Language;
const Symbols = Language.Symbols;

// The App Insights table names (what a query scoped to the component sees), with the legacy column names
// and types from "Migrate to workspace-based Application Insights resources". Our component is
// workspace-based, so `success` is the bool of AppRequests/AppDependencies, not the classic string.
const COMMON = {
  timestamp: "datetime",
  itemId: "string",
  itemType: "string",
  customDimensions: "dynamic",
  operation_Id: "string",
  operation_Name: "string",
  operation_ParentId: "string",
  operation_SyntheticSource: "string",
  session_Id: "string",
  user_Id: "string",
  user_AuthenticatedId: "string",
  user_AccountId: "string",
  application_Version: "string",
  client_Type: "string",
  client_Model: "string",
  client_OS: "string",
  client_IP: "string",
  client_City: "string",
  client_StateOrProvince: "string",
  client_CountryOrRegion: "string",
  client_Browser: "string",
  cloud_RoleName: "string",
  cloud_RoleInstance: "string",
  appId: "string",
  appName: "string",
  iKey: "string",
  sdkVersion: "string",
};
// Sampled telemetry: itemCount says how many items one row stands for.
const SAMPLED = { itemCount: "int", customMeasurements: "dynamic" };

const TABLES = {
  traces: { ...SAMPLED, message: "string", severityLevel: "int" },
  requests: {
    ...SAMPLED,
    id: "string",
    name: "string",
    url: "string",
    source: "string",
    success: "bool",
    resultCode: "string",
    duration: "real",
    performanceBucket: "string",
  },
  dependencies: {
    ...SAMPLED,
    id: "string",
    name: "string",
    target: "string",
    type: "string",
    data: "string",
    success: "bool",
    resultCode: "string",
    duration: "real",
    performanceBucket: "string",
  },
  exceptions: {
    ...SAMPLED,
    problemId: "string",
    handledAt: "string",
    type: "string",
    message: "string",
    assembly: "string",
    method: "string",
    outerType: "string",
    outerMessage: "string",
    outerAssembly: "string",
    outerMethod: "string",
    innermostType: "string",
    innermostMessage: "string",
    innermostAssembly: "string",
    innermostMethod: "string",
    severityLevel: "int",
    details: "dynamic",
  },
  customEvents: { ...SAMPLED, name: "string" },
  customMetrics: {
    name: "string",
    value: "real",
    valueCount: "int",
    valueSum: "real",
    valueMin: "real",
    valueMax: "real",
    valueStdDev: "real",
  },
  pageViews: {
    ...SAMPLED,
    id: "string",
    name: "string",
    url: "string",
    duration: "real",
    performanceBucket: "string",
  },
  availabilityResults: {
    ...SAMPLED,
    id: "string",
    name: "string",
    location: "string",
    success: "bool",
    message: "string",
    size: "real",
    duration: "real",
    performanceBucket: "string",
  },
  performanceCounters: {
    name: "string",
    category: "string",
    counter: "string",
    instance: "string",
    value: "real",
  },
};

function column(name, type) {
  const symbol = Symbols.ScalarTypes.GetSymbol(type);
  if (symbol === null) {
    throw new Error(`unknown scalar type ${type} for column ${name}`);
  }
  return new Symbols.ColumnSymbol(name, symbol, null, null, null, null);
}

function applicationInsights() {
  const tables = Object.entries(TABLES).map(
    ([name, own]) =>
      new Symbols.TableSymbol.$ctor4(
        name,
        Object.entries({ ...COMMON, ...own }).map(([columnName, type]) => column(columnName, type)),
      ),
  );
  const database = new Symbols.DatabaseSymbol.ctor("applicationinsights", tables);
  return Language.GlobalState.Default.WithDatabase(database);
}

function diagnostics(query, globals) {
  const found = Language.KustoCode.ParseAndAnalyze(query, globals).GetDiagnostics();
  const result = [];
  for (let index = 0; index < found.Count; index++) {
    const diagnostic = found.getItem(index);
    result.push({
      code: diagnostic.Code,
      severity: diagnostic.Severity,
      message: diagnostic.Message,
      start: diagnostic.Start,
      length: diagnostic.Length,
    });
  }
  return result;
}

function main() {
  const queries = JSON.parse(require("fs").readFileSync(0, "utf-8"));
  const globals = applicationInsights();
  const report = queries.map(({ name, query }) => ({ name, diagnostics: diagnostics(query, globals) }));
  process.stdout.write(JSON.stringify(report));
}

main();
