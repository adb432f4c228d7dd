// API Management in front of the function app. The function key lives in a secret named value filled
// from the app's host keys at deployment time (never a parameter, never an output); a backend adds it
// as x-functions-key, and forward-request waits backendTimeoutSeconds for the app's response headers.

@description('Required. API Management service name.')
param name string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resources.')
param tags object = {}

@description('Optional. Tier. Consumption deploys in minutes and bills per call; the v2 tiers add VNet integration; Developer is for tests only.')
@allowed([
  'Consumption'
  'Developer'
  'BasicV2'
  'StandardV2'
])
param skuName string = 'Consumption'

@description('Required. E-mail of the API publisher (API Management sends service notifications there).')
param publisherEmail string

@description('Optional. Name of the API publisher.')
param publisherName string = 'longrun'

@description('Required. Name of the function app behind the gateway (its host key is read at deployment).')
param functionAppName string

@description('Required. Default host name of the function app.')
param functionAppHostName string

@description('Optional. Path of the API on the gateway: clients call https://<gateway>/<apiPath>/api/jobs. PUBLIC_BASE_URL is https://<gateway>/<apiPath>.')
param apiPath string = 'longrun'

@description('Optional. Seconds the gateway waits for the function app\'s response headers (forward-request timeout). It must cover the slowest request, a 100 MB raw upload to POST /api/jobs, stay under the 230 s the Functions front end allows an HTTP response (and under the 240 s API Management honours), and exceed the 15 s event-stream heartbeat so a quiet stream is never cut between heartbeats. Submit itself answers in a few seconds: everything slower is a 202 that clients poll with Retry-After (1-30 s).')
@minValue(30)
@maxValue(220)
param backendTimeoutSeconds int = 120

@description('Optional. Whether callers need an API Management subscription key (Ocp-Apim-Subscription-Key).')
param subscriptionRequired bool = true

// One operation per route of the HTTP API (see api/).
var operations = [
  { name: 'submit-job', method: 'POST', urlTemplate: '/api/jobs', hasId: false }
  { name: 'list-jobs', method: 'GET', urlTemplate: '/api/jobs', hasId: false }
  { name: 'get-job', method: 'GET', urlTemplate: '/api/jobs/{id}', hasId: true }
  { name: 'cancel-job', method: 'DELETE', urlTemplate: '/api/jobs/{id}', hasId: true }
  { name: 'get-job-result', method: 'GET', urlTemplate: '/api/jobs/{id}/result', hasId: true }
  { name: 'create-upload', method: 'POST', urlTemplate: '/api/uploads', hasId: false }
  { name: 'health', method: 'GET', urlTemplate: '/api/health', hasId: false }
  { name: 'openapi', method: 'GET', urlTemplate: '/api/openapi.json', hasId: false }
  { name: 'list-dead-letters', method: 'GET', urlTemplate: '/api/dead-letters', hasId: false }
  { name: 'get-dead-letter', method: 'GET', urlTemplate: '/api/dead-letters/{id}', hasId: true }
  { name: 'replay-dead-letter', method: 'POST', urlTemplate: '/api/dead-letters/{id}/replay', hasId: true }
]

var idParameter = [
  {
    name: 'id'
    type: 'string'
    required: true
  }
]

var apiPolicyTemplate = '<policies><inbound><base /><set-backend-service backend-id="__BACKEND_ID__" /></inbound><backend><forward-request timeout="${backendTimeoutSeconds}" buffer-request-body="false" /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource apim 'Microsoft.ApiManagement/service@2023-05-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    capacity: skuName == 'Consumption' ? 0 : 1
  }
  identity: {
    type: 'SystemAssigned'
  }
  // checkov:skip=CKV_AZURE_107: The gateway is the public entry point; the Consumption tier has no VNet injection. Use a v2 tier with VNet integration to make the function app private.
  // checkov:skip=CKV_AZURE_174: The gateway is the public entry point by design.
  properties: {
    publisherEmail: publisherEmail
    publisherName: publisherName
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

resource functionKey 'Microsoft.ApiManagement/service/namedValues@2023-05-01-preview' = {
  parent: apim
  name: 'longrun-function-key'
  properties: {
    displayName: 'longrun-function-key'
    secret: true
    value: listKeys('${functionApp.id}/host/default', '2024-04-01').functionKeys.default
  }
}

resource backend 'Microsoft.ApiManagement/service/backends@2023-05-01-preview' = {
  parent: apim
  name: 'longrun-function'
  properties: {
    protocol: 'http'
    url: 'https://${functionAppHostName}'
    resourceId: '${environment().resourceManager}${substring(functionApp.id, 1)}'
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

resource api 'Microsoft.ApiManagement/service/apis@2023-05-01-preview' = {
  parent: apim
  name: 'longrun'
  properties: {
    displayName: 'longrun jobs API'
    path: apiPath
    protocols: [
      'https'
    ]
    serviceUrl: 'https://${functionAppHostName}'
    subscriptionRequired: subscriptionRequired
  }
}

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2023-05-01-preview' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: replace(apiPolicyTemplate, '__BACKEND_ID__', backend.name)
  }
}

resource apiOperations 'Microsoft.ApiManagement/service/apis/operations@2023-05-01-preview' = [for operation in operations: {
  parent: api
  name: operation.name
  properties: {
    displayName: operation.name
    method: operation.method
    urlTemplate: operation.urlTemplate
    templateParameters: operation.hasId ? idParameter : []
  }
}]

output name string = apim.name
output resourceId string = apim.id
output gatewayUrl string = apim.properties.gatewayUrl
