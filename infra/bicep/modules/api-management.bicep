// API Management in front of the function app. The function key never appears in a template: a
// secret named value refers to a Key Vault secret that the azd postdeploy hook (infra/hooks/postdeploy.sh)
// fills with a host key of the deployed app; a backend adds it as x-functions-key. Callers authenticate
// with the subscription key of the `longrun` product (the static pages alone are subscription-free, see
// `pages`), and forward-request waits backendTimeoutSeconds.
// On StandardV2 the service's outbound traffic leaves through subnetResourceId (VNet integration), so
// the function app can admit that subnet alone.

@description('Required. API Management service name.')
param name string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resources.')
param tags object = {}

@description('Optional. Tier. StandardV2 integrates outbound traffic into subnetResourceId; Consumption deploys in minutes and bills per call but has no VNet; BasicV2 has no VNet integration either; Developer is for tests only.')
@allowed([
  'Consumption'
  'Developer'
  'BasicV2'
  'StandardV2'
])
param skuName string = 'StandardV2'

@description('Optional. Resource id of a subnet delegated to Microsoft.Web/serverFarms for outbound VNet integration (StandardV2 only). Empty: no VNet.')
param subnetResourceId string = ''

@description('Required. E-mail of the API publisher (API Management sends service notifications there).')
param publisherEmail string

@description('Optional. Name of the API publisher.')
param publisherName string = 'longrun'

@description('Required. Resource id of the function app behind the gateway.')
param functionAppResourceId string

@description('Required. Default host name of the function app.')
param functionAppHostName string

@description('Required. Resource id of the gateway\'s user-assigned identity (Key Vault Secrets User on the vault below).')
param identityResourceId string

@description('Required. Client id of that identity: API Management reads the Key Vault secret as it.')
param identityClientId string

@description('Required. Versionless URI of the Key Vault secret that holds the function key (the postdeploy hook writes it; API Management refreshes it).')
param functionKeySecretUri string

@description('Optional. Path of the API on the gateway: clients call https://<gateway>/<apiPath>/api/jobs. PUBLIC_BASE_URL is https://<gateway>/<apiPath>.')
param apiPath string = 'longrun'

@description('Optional. Seconds the gateway waits for the function app\'s response headers (forward-request timeout). It must cover the slowest request, a 100 MB raw upload to POST /api/jobs, stay under the 230 s the Functions front end allows an HTTP response (and under the 240 s API Management honours), and exceed the 15 s event-stream heartbeat so a quiet stream is never cut between heartbeats. Submit itself answers in a few seconds: everything slower is a 202 that clients poll with Retry-After (1-30 s).')
@minValue(30)
@maxValue(220)
param backendTimeoutSeconds int = 120

// One operation per route of the HTTP API (see api/).
var operations = [
  { name: 'submit-job', method: 'POST', urlTemplate: '/api/jobs', hasId: false }
  { name: 'submit-jobs-batch', method: 'POST', urlTemplate: '/api/jobs/batch', hasId: false }
  { name: 'list-jobs', method: 'GET', urlTemplate: '/api/jobs', hasId: false }
  { name: 'get-job', method: 'GET', urlTemplate: '/api/jobs/{id}', hasId: true }
  { name: 'cancel-job', method: 'DELETE', urlTemplate: '/api/jobs/{id}', hasId: true }
  { name: 'get-job-result', method: 'GET', urlTemplate: '/api/jobs/{id}/result', hasId: true }
  { name: 'stream-job-events', method: 'GET', urlTemplate: '/api/jobs/{id}/events', hasId: true }
  { name: 'create-upload', method: 'POST', urlTemplate: '/api/uploads', hasId: false }
  { name: 'health', method: 'GET', urlTemplate: '/api/health', hasId: false }
  { name: 'openapi', method: 'GET', urlTemplate: '/api/openapi.json', hasId: false }
  { name: 'list-dead-letters', method: 'GET', urlTemplate: '/api/dead-letters', hasId: false }
  { name: 'get-dead-letter', method: 'GET', urlTemplate: '/api/dead-letters/{id}', hasId: true }
  { name: 'replay-dead-letter', method: 'POST', urlTemplate: '/api/dead-letters/{id}/replay', hasId: true }
  { name: 'job-stats', method: 'GET', urlTemplate: '/api/stats', hasId: false }
  // The reference design's routes (api/compat.py), for its clients.
  { name: 'submit-task', method: 'POST', urlTemplate: '/api/tasks', hasId: false }
  { name: 'get-task', method: 'GET', urlTemplate: '/api/tasks/{id}', hasId: true }
  { name: 'stream-task', method: 'GET', urlTemplate: '/api/tasks/{id}/stream', hasId: true }
]

// The pages (api/web.py): static, data-free, and loaded by a browser that sends no subscription key with a
// page or its scripts, so they live in subscription-free APIs of their own, one per path prefix
// (<apiPath>/api/ui, <apiPath>/api/docs), which the gateway prefers to the `longrun` API as the longer
// matching suffix. Each prefix is its own API, not one at <apiPath>/api, so that no data route can ever fall
// under a subscription-free API. The pages' own API calls (openapi.json, jobs, ...) still go to `longrun`
// with the key the user types, sent as Ocp-Apim-Subscription-Key (API_KEY_HEADER, function-app.bicep).
var pages = [
  { name: 'longrun-ui', displayName: 'longrun dashboard (static pages)', suffix: 'ui' }
  { name: 'longrun-docs', displayName: 'longrun API docs (static page)', suffix: 'docs' }
]

// GET only; `page` indexes `pages`. '/' is the page itself, '/{*path}' the dashboard's files (ui/app.js, ...).
var pageOperations = [
  { name: 'dashboard', page: 0, urlTemplate: '/' }
  { name: 'dashboard-files', page: 0, urlTemplate: '/{*path}' }
  { name: 'api-docs', page: 1, urlTemplate: '/' }
]

var idParameter = [
  {
    name: 'id'
    type: 'string'
    required: true
  }
]

// The dashboard's files: one wildcard operation for everything under /api/ui/ (pageOperations).
var pathParameter = [
  {
    name: 'path'
    type: 'string'
    required: true
  }
]

// The caller's identity for admission's per-client caps (CLIENT_ID_HEADER, X-Client-Id by default): the
// subscription, set here and overriding whatever a caller sends, since the Python worker does not see
// the function key's name (docs/operations.md).
// buffer-response="false": job event streams (text/event-stream) reach the client as they are written.
var apiPolicyTemplate = '<policies><inbound><base /><set-header name="X-Client-Id" exists-action="override"><value>@(context.Subscription?.Id ?? "anonymous")</value></set-header><set-backend-service backend-id="__BACKEND_ID__" /></inbound><backend><forward-request timeout="${backendTimeoutSeconds}" buffer-request-body="false" buffer-response="false" /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>'

// 2024-05-01: the first GA api version with the v2 tiers (BasicV2, StandardV2).
resource apim 'Microsoft.ApiManagement/service@2024-05-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    capacity: skuName == 'Consumption' ? 0 : 1
  }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  // checkov:skip=CKV_AZURE_107: The gateway is the public entry point: StandardV2 integrates only its outbound traffic into a subnet (the function app admits that subnet); the other tiers offered have no VNet integration.
  // checkov:skip=CKV_AZURE_174: The gateway is the public entry point by design.
  properties: {
    publisherEmail: publisherEmail
    publisherName: publisherName
    // 'External' with a delegated subnet is StandardV2's outbound VNet integration (2024-05-01 and later);
    // the gateway itself stays public.
    virtualNetworkType: empty(subnetResourceId) ? 'None' : 'External'
    virtualNetworkConfiguration: empty(subnetResourceId) ? null : {
      subnetResourceId: subnetResourceId
    }
    customProperties: skuName == 'Consumption' ? {} : {
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Ssl30': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'False'
    }
  }
}

// A Key Vault reference, not a value: API Management reads the secret with the gateway identity and
// refreshes it every four hours (the hook asks for an immediate refresh after writing a new key).
resource functionKey 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = {
  parent: apim
  name: 'longrun-function-key'
  properties: {
    displayName: 'longrun-function-key'
    secret: true
    keyVault: {
      secretIdentifier: functionKeySecretUri
      identityClientId: identityClientId
    }
  }
}

resource backend 'Microsoft.ApiManagement/service/backends@2024-05-01' = {
  parent: apim
  name: 'longrun-function'
  properties: {
    protocol: 'http'
    url: 'https://${functionAppHostName}'
    resourceId: '${environment().resourceManager}${substring(functionAppResourceId, 1)}'
    credentials: {
      header: {
        'x-functions-key': [
          '{{${functionKey.name}}}'
        ]
      }
    }
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
  }
}

resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: apim
  name: 'longrun'
  properties: {
    displayName: 'longrun jobs API'
    path: apiPath
    protocols: [
      'https'
    ]
    serviceUrl: 'https://${functionAppHostName}'
    subscriptionRequired: true
  }
}

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: replace(apiPolicyTemplate, '__BACKEND_ID__', backend.name)
  }
}

resource apiOperations 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = [for operation in operations: {
  parent: api
  name: operation.name
  properties: {
    displayName: operation.name
    method: operation.method
    urlTemplate: operation.urlTemplate
    templateParameters: operation.hasId ? idParameter : []
  }
}]

// The same backend as `longrun` (its function key from Key Vault, TLS checks) rooted at the page's path,
// so /<apiPath>/api/ui/app.js reaches https://<app>/api/ui/app.js.
resource pageBackends 'Microsoft.ApiManagement/service/backends@2024-05-01' = [for page in pages: {
  parent: apim
  name: '${backend.name}-${page.suffix}'
  properties: {
    protocol: 'http'
    url: 'https://${functionAppHostName}/api/${page.suffix}'
    resourceId: '${environment().resourceManager}${substring(functionAppResourceId, 1)}'
    credentials: {
      header: {
        'x-functions-key': [
          '{{${functionKey.name}}}'
        ]
      }
    }
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
  }
}]

resource pageApis 'Microsoft.ApiManagement/service/apis@2024-05-01' = [for page in pages: {
  parent: apim
  name: page.name
  properties: {
    displayName: page.displayName
    path: '${apiPath}/api/${page.suffix}'
    protocols: [
      'https'
    ]
    serviceUrl: 'https://${functionAppHostName}/api/${page.suffix}'
    // The one place without a subscription: these paths serve files from web/ and nothing else.
    subscriptionRequired: false
  }
}]

// The same policy as `longrun` (forward-request timeout; the app adds its CSP and security headers).
resource pageApiPolicies 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = [for (page, index) in pages: {
  parent: pageApis[index]
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: replace(apiPolicyTemplate, '__BACKEND_ID__', pageBackends[index].name)
  }
}]

resource pageApiOperations 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' = [for operation in pageOperations: {
  parent: pageApis[operation.page]
  name: operation.name
  properties: {
    displayName: operation.name
    method: 'GET'
    urlTemplate: operation.urlTemplate
    templateParameters: contains(operation.urlTemplate, '{*path}') ? pathParameter : []
  }
}]

// Subscriptions are required, so the API is published in a product callers subscribe to; one
// subscription is created for the first client (its keys: docs/deploy.md, never an output).
resource product 'Microsoft.ApiManagement/service/products@2024-05-01' = {
  parent: apim
  name: 'longrun'
  properties: {
    displayName: 'longrun'
    description: 'Long-running jobs: submit, poll, fetch results.'
    subscriptionRequired: true
    approvalRequired: false
    state: 'published'
  }
}

resource productApi 'Microsoft.ApiManagement/service/products/apis@2024-05-01' = {
  parent: product
  name: api.name
}

resource defaultSubscription 'Microsoft.ApiManagement/service/subscriptions@2024-05-01' = {
  parent: apim
  name: 'longrun-default'
  properties: {
    displayName: 'longrun default client'
    scope: product.id
    state: 'active'
  }
  dependsOn: [
    productApi
  ]
}

output name string = apim.name
output resourceId string = apim.id
output gatewayUrl string = apim.properties.gatewayUrl
output subscriptionName string = defaultSubscription.name
