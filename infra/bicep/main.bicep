// longrun: long-running jobs behind a 202/Location HTTP API on Durable Functions (Python, Flex Consumption).
// `azd up` deploys this with main.parameters.json; `az deployment sub create` works the same (docs/deploy.md).
targetScope = 'subscription'

@description('Required. Name of the azd environment; names the resource group and tags every resource.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Required. Azure region for every resource. It must offer Flex Consumption.')
@minLength(1)
param location string

@description('Optional. Object id of the person deploying (azd sets AZURE_PRINCIPAL_ID). Gets the same storage and telemetry roles as the app, so the app can run on a laptop against the deployed storage. Empty: no user roles.')
param principalId string = ''

@description('Optional. Principal type of principalId.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('Required. E-mail address that receives the alerts (and API Management\'s publisher notices).')
@minLength(3)
param alertEmail string

@description('Optional. Gateway in front of the function app: API Management (StandardV2 by default) or Application Gateway v2 with WAF.')
@allowed([
  'apiManagement'
  'applicationGateway'
])
param gatewayType string = 'apiManagement'

@description('Optional. Seconds the gateway waits for the function app (APIM forward-request timeout / Application Gateway request timeout). Budget: a submit answers in a few seconds and the slowest request is a 100 MB raw upload to POST /api/jobs, so it needs tens of seconds, not minutes; it must stay below the 230 s after which the Functions front end drops any HTTP response (and the 240 s API Management honours), and above the 15 s heartbeat of event streams so a quiet stream survives. Long work never holds a request: it is a 202 that clients poll with Retry-After (1-30 s). See docs/timeouts.md.')
@minValue(30)
@maxValue(220)
param gatewayBackendTimeoutSeconds int = 120

@description('Optional. API Management tier (gatewayType apiManagement). StandardV2 integrates its outbound traffic into a subnet and the function app admits that subnet only. Consumption, Developer and BasicV2 have no outbound VNet integration: the app then admits the whole AzureCloud service tag, any Azure tenant\'s traffic, and only the function key keeps others out (docs/deploy.md).')
@allowed([
  'Consumption'
  'Developer'
  'BasicV2'
  'StandardV2'
])
param apiManagementSku string = 'StandardV2'

@description('Optional. Path of the API on the API Management gateway.')
param apiPath string = 'longrun'

@description('Optional. Key Vault secret URI of the TLS certificate (gatewayType applicationGateway; required there: the deployment stops on an empty value). The gateway identity (output AZURE_GATEWAY_IDENTITY_PRINCIPAL_ID) needs Key Vault Secrets User on it.')
param appGatewayCertificateSecretUri string = ''

@description('Optional. Public host name the certificate is for (gatewayType applicationGateway), e.g. jobs.example.com, pointed at the gateway\'s IP. Empty: <label>.<region>.cloudapp.azure.com.')
param appGatewayHostName string = ''

@description('Optional. Client IP addresses or CIDR ranges the Application Gateway lets through (gatewayType applicationGateway), on top of the function key each client sends. Empty: any address.')
param appGatewayAllowedClientAddresses array = []

@description('Optional. Instance memory in MB of the Flex Consumption app: 2048 (one vCPU) or 4096 (two); the service refuses 512 for new apps.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Most instances the Flex Consumption app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Optional. Always-ready instances for the Durable group (0 saves money but a job after an idle spell waits for a cold start).')
@minValue(0)
@maxValue(10)
param alwaysReadyDurableInstances int = 1

@description('Optional. Threads per Python worker (PYTHON_THREADPOOL_THREAD_COUNT); Durable concurrency is set to match.')
@minValue(1)
@maxValue(32)
param threadsPerWorker int = 8

@description('Optional. Days the app keeps finished jobs\' payloads and results (RETENTION_DAYS).')
@minValue(1)
@maxValue(365)
param retentionDays int = 7

@description('Optional. Days dead letters are kept, and with them the inputs of dead-lettered jobs for replay (DEADLETTER_RETENTION_DAYS).')
@minValue(1)
@maxValue(365)
param deadLetterRetentionDays int = 30

@description('Optional. Extra days the storage lifecycle policy waits after RETENTION_DAYS before deleting job blobs itself: the app\'s retention timer purges first, the policy only catches what it missed.')
@minValue(1)
@maxValue(30)
param lifecycleMarginDays int = 3

@description('Optional. Keep the Durable task hub in a storage account of its own, so job traffic and task hub traffic do not share one account\'s request limits.')
param separateTaskHubStorage bool = false

@description('Optional. True once the azd postdeploy hook has stored the function key in Key Vault (it sets FUNCTION_KEY_IN_KEY_VAULT): later provisions leave that secret alone. Set it by hand only if you ran the hook yourself.')
param functionKeyInKeyVault bool = false

@description('Optional. True once the azd postdeploy hook has generated the webhook signing secret in Key Vault (it sets WEBHOOK_SECRET_IN_KEY_VAULT): later provisions leave that secret alone.')
param webhookSecretInKeyVault bool = false

@description('Optional. Alert when more than this percent of finished jobs failed in 15 minutes.')
@minValue(1)
@maxValue(100)
param jobFailureRatePercent int = 10

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'longrun'
}

// The names in storage/names.py (tests/infra checks they match).
var payloadsContainer = 'payloads'
var resultsContainer = 'results'
var inboxQueue = 'jobs-inbox'
var inboxPoisonQueue = 'jobs-inbox-poison'
var deadLetterQueue = 'jobs-deadletter'
var admissionsQueue = 'jobs-admitted'
var webhookEventsQueue = 'webhook-events'
var jobsTable = 'Jobs'
var deadLettersTable = 'DeadLetters'
var webhookBreakersTable = 'WebhookBreakers'

var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var deploymentContainer = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var taskHubName = 'longrun${resourceToken}'
var apiManagementName = '${abbrs.apiManagementService}${resourceToken}'
var appGatewayDnsLabel = 'longrun-${resourceToken}'
var keyVaultName = '${abbrs.keyVaultVaults}${resourceToken}'
var functionKeySecretName = 'longrun-function-key'
var webhookSecretName = 'longrun-webhook-secret'

// Known before the gateway exists, so the app's settings and the gateway do not depend on each other.
var appGatewayUrl = empty(appGatewayHostName) ? 'https://${appGatewayDnsLabel}.${location}.cloudapp.azure.com' : 'https://${appGatewayHostName}'
// The gateway reaches the app from a subnet of ours: Application Gateway always, API Management on
// StandardV2 (the only tier offered here with outbound VNet integration).
var apiManagementInSubnet = (gatewayType == 'apiManagement') && (apiManagementSku == 'StandardV2')
var gatewayInSubnet = (gatewayType == 'applicationGateway') || apiManagementInSubnet

var publicBaseUrl = gatewayType == 'apiManagement' ? 'https://${apiManagementName}.azure-api.net/${apiPath}' : appGatewayUrl
// The dashboard is served by the gateway and uploads from the browser straight to Blob storage (CORS).
var publicOrigin = gatewayType == 'apiManagement' ? 'https://${apiManagementName}.azure-api.net' : appGatewayUrl

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

// The gateway's own identity: reads the function key (API Management) or the TLS certificate
// (Application Gateway) from Key Vault, and nothing else.
module gatewayIdentity 'modules/identity.bicep' = {
  name: 'gateway-identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}gw-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    containers: [
      payloadsContainer
      resultsContainer
      deploymentContainer
    ]
    queues: [
      inboxQueue
      inboxPoisonQueue
      deadLetterQueue
      admissionsQueue
      webhookEventsQueue
    ]
    tables: [
      jobsTable
      deadLettersTable
      webhookBreakersTable
    ]
    blobCorsOrigins: [
      publicOrigin
    ]
    lifecycleRules: [
      {
        name: 'delete-expired-job-data'
        prefixes: [
          '${payloadsContainer}/uploads/'
          '${resultsContainer}/jobs/'
        ]
        deleteAfterDays: retentionDays + lifecycleMarginDays
      }
      {
        // A dead letter keeps its job's input for replay, so inputs live as long as dead letters do.
        name: 'delete-expired-job-inputs'
        prefixes: [
          '${payloadsContainer}/jobs/'
        ]
        deleteAfterDays: max(retentionDays, deadLetterRetentionDays) + lifecycleMarginDays
      }
    ]
  }
}

// The Durable extension creates its own queues, tables and containers in this account.
module taskHubStorage 'modules/storage.bicep' = if (separateTaskHubStorage) {
  name: 'task-hub-storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}hub${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module appRoles 'modules/rbac.bicep' = {
  name: 'app-roles'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    principalType: 'ServicePrincipal'
  }
}

module developerRoles 'modules/rbac.bicep' = if (!empty(principalId)) {
  name: 'developer-roles'
  scope: rg
  params: {
    principalId: principalId
    principalType: principalType
  }
}

module network 'modules/network.bicep' = if (gatewayInSubnet) {
  name: 'network'
  scope: rg
  params: {
    name: '${abbrs.networkVirtualNetworks}${resourceToken}'
    location: location
    tags: tags
    gatewayType: gatewayType
  }
}

// Every gateway type: the app reads its webhook signing secret from here.
module keyVault 'modules/key-vault.bicep' = {
  name: 'key-vault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    functionKeySecretName: functionKeySecretName
    functionKeyStored: functionKeyInKeyVault
    placeholderValue: 'not-a-key: the azd postdeploy hook (infra/hooks/postdeploy.sh) writes the function key here'
    webhookSecretName: webhookSecretName
    webhookSecretStored: webhookSecretInKeyVault
    webhookPlaceholderValue: 'not-a-secret: the azd postdeploy hook (infra/hooks/postdeploy.sh) generates the webhook secret here'
    appPrincipalId: identity.outputs.principalId
    readerPrincipalId: gatewayIdentity.outputs.principalId
    writerPrincipalId: principalId
    writerPrincipalType: principalType
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    identityResourceId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainer
    taskHubStorageEndpoints: separateTaskHubStorage ? {
      blob: taskHubStorage.outputs.blobEndpoint
      queue: taskHubStorage.outputs.queueEndpoint
      table: taskHubStorage.outputs.tableEndpoint
    } : {}
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    taskHubName: taskHubName
    publicBaseUrl: publicBaseUrl
    // Behind API Management the pages send the key the user types as a subscription key (docs/dashboard.md).
    dashboardCredentialHeader: gatewayType == 'apiManagement' ? 'Ocp-Apim-Subscription-Key' : 'x-functions-key'
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyDurableInstances: alwaysReadyDurableInstances
    threadsPerWorker: threadsPerWorker
    retentionDays: retentionDays
    deadLetterRetentionDays: deadLetterRetentionDays
    // An event stream ends on its own well before the gateway would cut it (docs/timeouts.md).
    sseMaxStreamSeconds: min(200, max(10, gatewayBackendTimeoutSeconds - 30))
    webhookSecretUri: keyVault.outputs.webhookSecretUri
    // Only the gateway reaches the app (docs/deploy.md, "Who can reach the function app"): its subnet,
    // or, for API Management tiers without VNet integration, the weaker AzureCloud service tag.
    allowedCaller: gatewayInSubnet ? {
      subnetResourceId: network.outputs.gatewaySubnetResourceId
    } : {
      serviceTag: 'AzureCloud'
    }
  }
  dependsOn: [
    appRoles
  ]
}

module apiManagement 'modules/api-management.bicep' = if (gatewayType == 'apiManagement') {
  name: 'api-management'
  scope: rg
  params: {
    name: apiManagementName
    location: location
    tags: tags
    skuName: apiManagementSku
    subnetResourceId: apiManagementInSubnet ? network.outputs.gatewaySubnetResourceId : ''
    publisherEmail: alertEmail
    functionAppResourceId: functionApp.outputs.resourceId
    functionAppHostName: functionApp.outputs.defaultHostName
    identityResourceId: gatewayIdentity.outputs.resourceId
    identityClientId: gatewayIdentity.outputs.clientId
    functionKeySecretUri: keyVault.outputs.functionKeyUri
    apiPath: apiPath
    backendTimeoutSeconds: gatewayBackendTimeoutSeconds
  }
}

module applicationGateway 'modules/application-gateway.bicep' = if (gatewayType == 'applicationGateway') {
  name: 'application-gateway'
  scope: rg
  params: {
    name: '${abbrs.networkApplicationGateways}${resourceToken}'
    location: location
    tags: tags
    subnetResourceId: network.outputs.gatewaySubnetResourceId
    publicIpName: '${abbrs.networkPublicIPAddresses}${resourceToken}'
    wafPolicyName: '${abbrs.networkApplicationGatewayWebApplicationFirewallPolicies}${resourceToken}'
    dnsLabel: appGatewayDnsLabel
    identityResourceId: gatewayIdentity.outputs.resourceId
    certificateSecretUri: appGatewayCertificateSecretUri
    allowedClientAddresses: appGatewayAllowedClientAddresses
    functionAppHostName: functionApp.outputs.defaultHostName
    backendTimeoutSeconds: gatewayBackendTimeoutSeconds
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    actionGroupName: '${abbrs.insightsActionGroups}${resourceToken}'
    namePrefix: '${abbrs.insightsScheduledQueryRules}${resourceToken}-'
    location: location
    tags: tags
    alertEmail: alertEmail
    applicationInsightsResourceId: monitoring.outputs.applicationInsightsResourceId
    storageAccountResourceId: storage.outputs.resourceId
    jobFailureRatePercent: jobFailureRatePercent
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    displayName: 'longrun jobs (${environmentName})'
    location: location
    tags: tags
    applicationInsightsResourceId: monitoring.outputs.applicationInsightsResourceId
    storageAccountResourceId: storage.outputs.resourceId
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output TASK_HUB_NAME string = taskHubName
output GATEWAY_TYPE string = gatewayType
output AZURE_GATEWAY_IDENTITY_PRINCIPAL_ID string = gatewayIdentity.outputs.principalId
// Read by infra/hooks/postdeploy.sh (azd passes outputs to hooks as environment variables).
output AZURE_KEY_VAULT_NAME string = keyVaultName
output AZURE_KEY_VAULT_FUNCTION_KEY_NAME string = functionKeySecretName
output AZURE_KEY_VAULT_WEBHOOK_SECRET_NAME string = webhookSecretName
output AZURE_API_MANAGEMENT_NAME string = gatewayType == 'apiManagement' ? apiManagementName : ''
output PUBLIC_BASE_URL string = publicBaseUrl
