// The function app on Flex Consumption (FC1), Python 3.11, with identity-based storage and telemetry.
// Every app setting the code reads is set here: the aliases of shared.settings.Settings plus the host's
// own (task hub, retention schedule, worker concurrency, Application Insights). tests/infra checks both.

@description('Required. Function app name.')
param name string

@description('Required. Flex Consumption plan name.')
param planName string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resources (the app also gets the azd service tag).')
param tags object = {}

@description('Optional. azd service name in azure.yaml this app hosts.')
param serviceName string = 'api'

@description('Required. Resource id of the user-assigned identity the app runs as.')
param identityResourceId string

@description('Required. Client id of that identity: the storage and Application Insights SDKs pick it by this id.')
param identityClientId string

@description('Required. Primary blob endpoint of the app\'s storage account (its primaryEndpoints.blob, ending in a slash).')
param blobEndpoint string

@description('Required. Primary queue endpoint of the app\'s storage account.')
param queueEndpoint string

@description('Required. Primary table endpoint of the app\'s storage account.')
param tableEndpoint string

@description('Required. Blob container Flex Consumption deploys the app package to.')
param deploymentContainerName string

@description('Optional. Endpoints of a separate storage account for the Durable task hub; empty to keep the task hub in the app\'s account.')
param taskHubStorageEndpoints object = {}

@description('Required. Application Insights connection string (holds no secret: local auth is disabled, the app authenticates with its identity).')
param applicationInsightsConnectionString string

@description('Required. Durable task hub name: letters and digits, unique per environment sharing a storage account.')
@minLength(3)
@maxLength(45)
param taskHubName string

@description('Required. URL clients reach the API through (the gateway), without a trailing slash. The app builds Location and link URLs from it by appending /api/...')
param publicBaseUrl string

@description('Optional. Instance memory in MB: the sizes the service accepts for new Flex Consumption apps (azure-rest-api-specs#40898: 512 is refused). 2,048 MB gives one vCPU; 4,096 MB two, for CPU-heavy chunks.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Most instances the app scales out to. Storage and downstream systems must take this many instances × PYTHON_THREADPOOL_THREAD_COUNT concurrent calls.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Optional. Always-ready instances for the Durable group (orchestrators, activities, entities): at least one keeps control-queue polling warm so a job starts within a polling interval instead of a cold start.')
@minValue(0)
@maxValue(10)
param alwaysReadyDurableInstances int = 1

@description('Optional. Concurrent HTTP requests one instance takes before Flex adds another. The API handlers only touch storage and the Durable client, so more than Python\'s default of 1 is safe.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Optional. Threads of the one Python worker process a Flex Consumption instance runs (PYTHON_THREADPOOL_THREAD_COUNT; FUNCTIONS_WORKER_PROCESS_COUNT is not a Flex setting). Durable activity and orchestrator concurrency are set to the same figure, the real Python concurrency.')
@minValue(1)
@maxValue(32)
param threadsPerWorker int = 8

@description('Optional. Who may call the app directly: `{ subnetResourceId: \'...\' }` (the gateway\'s subnet, with the Microsoft.Web service endpoint: Application Gateway, or API Management StandardV2 with outbound VNet integration) or `{ serviceTag: \'AzureCloud\' }` (API Management tiers without VNet integration: weaker, any Azure tenant passes). Everything else gets 403 from the platform before the Functions host sees it. Empty: no restriction (not used by main.bicep).')
param allowedCaller object = {}

@description('Optional. Days the app keeps finished jobs\' payloads and results before its retention timer purges them (RETENTION_DAYS).')
@minValue(1)
@maxValue(365)
param retentionDays int = 7

@description('Optional. Days dead letters are kept (DEADLETTER_RETENTION_DAYS).')
@minValue(1)
@maxValue(365)
param deadLetterRetentionDays int = 30

@description('Optional. NCRONTAB (six fields, UTC) of the retention timer (RETENTION_SCHEDULE).')
param retentionSchedule string = '0 15 3 * * *'

@description('Optional. Largest JSON request body in bytes (MAX_JSON_BODY_BYTES).')
@minValue(1024)
param maxJsonBodyBytes int = 1048576

@description('Optional. Largest raw (CSV) request body in bytes (MAX_RAW_BODY_BYTES). The host limit (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT) is set 1 MiB above it; the app holds a raw body in memory, so more than 100 MB is refused; bigger inputs go through POST /api/uploads straight to Blob.')
@minValue(1024)
@maxValue(104857600)
param maxRawBodyBytes int = 104857600

@description('Optional. Minutes an upload URL (user-delegation SAS) stays valid (UPLOAD_URL_TTL_MINUTES).')
@minValue(1)
@maxValue(1440)
param uploadUrlTtlMinutes int = 15

@description('Optional. Chunks processed in parallel per job (MAX_PARALLEL_CHUNKS).')
@minValue(1)
@maxValue(64)
param maxParallelChunks int = 8

@description('Optional. Target chunk size in bytes (CHUNK_TARGET_BYTES). Keep one chunk\'s processing well under a minute.')
@minValue(1024)
param chunkTargetBytes int = 8388608

@description('Optional. Input bytes one job may have in chunks at once (MAX_CHUNK_BYTES_IN_FLIGHT): fewer chunks than maxParallelChunks run when theirs would exceed it, which bounds a job\'s memory.')
@minValue(1024)
param maxChunkBytesInFlight int = 33554432

@description('Optional. Chunk size in bytes of the kinds that stream their chunks, csv-report (CHUNK_TARGET_BYTES_STREAMED): fewer, larger chunks, whose memory does not grow with their size. 0 or not above chunkTargetBytes: chunkTargetBytes, as every kind.')
@minValue(0)
param chunkTargetBytesStreamed int = 0

@description('Optional. A job of several chunks whose kind estimates its work at this many seconds or less runs whole in one activity (WHOLE_RUN_MAX_SECONDS, a decimal string; "0": only one-chunk jobs do).')
param wholeRunMaxSeconds string = '0.5'

@description('Optional. Chunks per sub-orchestration (CHUNKS_PER_SUB_ORCHESTRATION): bounds each history Python replays.')
@minValue(1)
@maxValue(200)
param chunksPerSubOrchestration int = 50

@description('Optional. Most chunks one job is split into (MAX_CHUNKS_PER_JOB): bigger inputs get bigger chunks, so a job\'s Durable history stays bounded.')
@minValue(1)
@maxValue(10000)
param maxChunksPerJob int = 1000

@description('Optional. Jobs past admission (processing) at once over the whole app (MAX_RUNNING_JOBS); the rest wait in their priority lane.')
@minValue(1)
@maxValue(100000)
param maxRunningJobs int = 1000

@description('Optional. Jobs one client may have past admission at once (MAX_RUNNING_JOBS_PER_CLIENT); its others wait in their lane.')
@minValue(1)
@maxValue(100000)
param maxRunningJobsPerClient int = 1000

@description('Optional. Jobs that may wait for admission (MAX_PENDING_JOBS); past it a submit answers 429 with Retry-After.')
@minValue(1)
@maxValue(10000000)
param maxPendingJobs int = 100000

@description('Optional. Weighted fair sharing between the high:normal:low lanes (LANE_WEIGHTS).')
param laneWeights string = '6:3:1'

@description('Optional. Request header naming the client for per-client caps (CLIENT_ID_HEADER); the gateway must set it and overwrite what clients send.')
param clientIdHeader string = 'X-Client-Id'

@description('Optional. Header the dashboard and Swagger UI send the key the user types in (API_KEY_HEADER): x-functions-key, or Ocp-Apim-Subscription-Key behind API Management, whose `longrun` API asks for a subscription key.')
@allowed([
  'x-functions-key'
  'Ocp-Apim-Subscription-Key'
])
param dashboardCredentialHeader string = 'x-functions-key'

@description('Optional. Seconds a waiting job waits for its admission notice before it checks by itself (ADMISSION_RECHECK_SECONDS).')
@minValue(1)
@maxValue(3600)
param admissionRecheckSeconds int = 60

@description('Optional. Seconds a stopping job waits for its running chunks to see the stop marker before it cleans up (STOP_GRACE_SECONDS).')
@minValue(1)
@maxValue(600)
param stopGraceSeconds int = 30

@description('Optional. First retry delay in seconds (RETRY_FIRST_INTERVAL_SECONDS).')
param retryFirstIntervalSeconds string = '1'

@description('Optional. Backoff coefficient (RETRY_BACKOFF_COEFFICIENT).')
param retryBackoffCoefficient string = '2'

@description('Optional. Longest retry delay in seconds (RETRY_MAX_INTERVAL_SECONDS).')
param retryMaxIntervalSeconds string = '60'

@description('Optional. Attempts per chunk before the job fails and is dead-lettered (RETRY_MAX_ATTEMPTS).')
@minValue(1)
@maxValue(20)
param retryMaxAttempts int = 5

@description('Optional. Seconds between two status reads of one open job event stream or long-poll (SSE_POLL_SECONDS): each read is one Durable status query, so this sets what a watcher costs.')
@minValue(1)
@maxValue(30)
param ssePollSeconds int = 2

@description('Optional. Seconds a job event stream may stay quiet before it sends a `: ping` comment (SSE_HEARTBEAT_SECONDS). Must stay below every idle timeout on the way (gateway, load balancer).')
@minValue(1)
@maxValue(60)
param sseHeartbeatSeconds int = 15

@description('Optional. Seconds after which a job event stream ends on its own and the client resumes with Last-Event-ID (SSE_MAX_STREAM_SECONDS). Must stay below the gateway timeout and the 230 s the Functions front end allows a response.')
@minValue(10)
@maxValue(200)
param sseMaxStreamSeconds int = 90

@description('Required. Versionless URI of the Key Vault secret that signs webhook deliveries (whsec_...). The app reads it as a Key Vault reference with its user-assigned identity (WEBHOOK_SECRET).')
param webhookSecretUri string

@description('Optional. Comma-separated callback host names exempt from the private-address check (WEBHOOK_ALLOWED_HOSTS). Empty in production: callbacks must resolve to public addresses.')
param webhookAllowedHosts string = ''

@description('Optional. Consecutive failed deliveries to one host that open its circuit breaker (WEBHOOK_BREAKER_FAILURES).')
@minValue(1)
@maxValue(1000)
param webhookBreakerFailures int = 5

@description('Optional. Seconds an open circuit breaker keeps deliveries to its host waiting before one probe is let through (WEBHOOK_BREAKER_OPEN_SECONDS).')
@minValue(1)
@maxValue(86400)
param webhookBreakerOpenSeconds int = 60

@description('Optional. Shortest interval in seconds between two progress webhooks of one job (WEBHOOK_PROGRESS_SECONDS).')
@minValue(1)
@maxValue(86400)
param webhookProgressSeconds int = 30

// One worker process per Flex instance, so the real Python concurrency is the thread count.
var pythonConcurrency = threadsPerWorker

// Access restrictions: the gateway only. The scm (deployment) site keeps its own, open list: azd and
// `func publish` deploy through it with an Entra token (basic publishing credentials are off below).
var callerRule = contains(allowedCaller, 'subnetResourceId') ? {
  name: 'gateway-subnet'
  description: 'The gateway subnet (Application Gateway, or API Management outbound VNet integration)'
  action: 'Allow'
  priority: 100
  vnetSubnetResourceId: allowedCaller.subnetResourceId
} : {
  name: 'gateway-service-tag'
  description: 'API Management (service tag)'
  action: 'Allow'
  priority: 100
  tag: 'ServiceTag'
  ipAddress: contains(allowedCaller, 'serviceTag') ? allowedCaller.serviceTag : 'AzureCloud'
}

var storageSettings = {
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
}

// The task hub moves to its own account through a named connection, without touching host.json.
var taskHubStorageSettings = empty(taskHubStorageEndpoints) ? {} : {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionName: 'DurableTaskStorage'
  DurableTaskStorage__blobServiceUri: taskHubStorageEndpoints.blob
  DurableTaskStorage__queueServiceUri: taskHubStorageEndpoints.queue
  DurableTaskStorage__tableServiceUri: taskHubStorageEndpoints.table
  DurableTaskStorage__credential: 'managedidentity'
  DurableTaskStorage__clientId: identityClientId
}

var hostSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // host.json "telemetryMode": "OpenTelemetry": the worker configures the azure-monitor-opentelemetry
  // distro itself and the host then ships no second copy of its logs; only the app's structured events
  // (the `longrun` logger) are exported from the worker (shared/observability.py).
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  PYTHON_AZURE_MONITOR_LOGGER_NAME: 'longrun'
  TASK_HUB_NAME: taskHubName
  RETENTION_SCHEDULE: retentionSchedule
  PYTHON_THREADPOOL_THREAD_COUNT: string(threadsPerWorker)
  // HTTP streams (azurefunctions-extensions-http-fastapi): the worker starts its web server, and the host
  // proxies HTTP to it, only with init indexing on (host 4.34.1+, which Flex Consumption runs).
  PYTHON_ENABLE_INIT_INDEXING: '1'
  // The host's request body limit (Kestrel's MaxRequestBodySize, 100 MB by default) set 1 MiB above the
  // app's own, so a body over MAX_RAW_BODY_BYTES gets the app's 413 problem (refused on its declared
  // length, or counted as it streams in) rather than the host's bare 413.
  FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(maxRawBodyBytes + 1048576)
  AzureFunctionsJobHost__extensions__durableTask__maxConcurrentActivityFunctions: string(pythonConcurrency)
  AzureFunctionsJobHost__extensions__durableTask__maxConcurrentOrchestratorFunctions: string(pythonConcurrency)
}

// The aliases of shared.settings.Settings, with production-safe values.
var appSettings = {
  PUBLIC_BASE_URL: publicBaseUrl
  MAX_JSON_BODY_BYTES: string(maxJsonBodyBytes)
  MAX_RAW_BODY_BYTES: string(maxRawBodyBytes)
  UPLOAD_URL_TTL_MINUTES: string(uploadUrlTtlMinutes)
  ENABLE_SIMULATE_KIND: 'false'
  MAX_PARALLEL_CHUNKS: string(maxParallelChunks)
  CHUNK_TARGET_BYTES: string(chunkTargetBytes)
  MAX_CHUNK_BYTES_IN_FLIGHT: string(maxChunkBytesInFlight)
  CHUNK_TARGET_BYTES_STREAMED: string(chunkTargetBytesStreamed)
  WHOLE_RUN_MAX_SECONDS: wholeRunMaxSeconds
  CHUNKS_PER_SUB_ORCHESTRATION: string(chunksPerSubOrchestration)
  MAX_CHUNKS_PER_JOB: string(maxChunksPerJob)
  STOP_GRACE_SECONDS: string(stopGraceSeconds)
  MAX_RUNNING_JOBS: string(maxRunningJobs)
  MAX_RUNNING_JOBS_PER_CLIENT: string(maxRunningJobsPerClient)
  MAX_PENDING_JOBS: string(maxPendingJobs)
  LANE_WEIGHTS: laneWeights
  CLIENT_ID_HEADER: clientIdHeader
  API_KEY_HEADER: dashboardCredentialHeader
  ADMISSION_RECHECK_SECONDS: string(admissionRecheckSeconds)
  RETRY_FIRST_INTERVAL_SECONDS: retryFirstIntervalSeconds
  RETRY_BACKOFF_COEFFICIENT: retryBackoffCoefficient
  RETRY_MAX_INTERVAL_SECONDS: retryMaxIntervalSeconds
  RETRY_MAX_ATTEMPTS: string(retryMaxAttempts)
  RETENTION_DAYS: string(retentionDays)
  DEADLETTER_RETENTION_DAYS: string(deadLetterRetentionDays)
  SSE_POLL_SECONDS: string(ssePollSeconds)
  SSE_HEARTBEAT_SECONDS: string(sseHeartbeatSeconds)
  SSE_MAX_STREAM_SECONDS: string(sseMaxStreamSeconds)
  // Resolved by the platform with keyVaultReferenceIdentity (below); the secret never appears in a template.
  WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${webhookSecretUri})'
  WEBHOOK_ALLOW_HTTP: 'false'
  WEBHOOK_ALLOWED_HOSTS: webhookAllowedHosts
  WEBHOOK_BREAKER_FAILURES: string(webhookBreakerFailures)
  WEBHOOK_BREAKER_OPEN_SECONDS: string(webhookBreakerOpenSeconds)
  WEBHOOK_PROGRESS_SECONDS: string(webhookProgressSeconds)
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists only in some regions; set zoneRedundant true here where the region offers it.
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  // checkov:skip=CKV_AZURE_222: Public network access stays on only for the access restrictions below: the gateway's subnet (service endpoint; or, for API Management tiers without VNet integration, the AzureCloud tag) is allowed, everyone else gets 403. No private endpoint: the gateways reach the app from their subnet without one.
  // checkov:skip=CKV_AZURE_17: Callers are authenticated by a function key (the gateway's, from Key Vault, or the client's own behind Application Gateway); client certificates would be a second credential the gateway must also hold.
  properties: {
    // checkov:skip=CKV_AZURE_212: Flex Consumption has no fixed instance count; the always-ready instance of the durable group below keeps one instance warm and the platform adds more on demand.
    // checkov:skip=CKV_AZURE_78: Flex Consumption rejects siteConfig.ftpsState (ARM 51021) and has no FTP endpoint; FTP publishing is off through the basicPublishingCredentialsPolicies 'ftp' below.
    // checkov:skip=CKV_AZURE_213: Flex Consumption does not offer the App Service health check; the gateway probes GET /api/health instead.
    serverFarmId: plan.id
    // Key Vault references (WEBHOOK_SECRET) are read with the app's user-assigned identity, not a system one.
    keyVaultReferenceIdentity: identityResourceId
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    // No ftpsState: Flex Consumption rejects it (ARM error 51021); FTP is off through basicPublishingCredentialsPolicies below.
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      ipSecurityRestrictionsDefaultAction: empty(allowedCaller) ? 'Allow' : 'Deny'
      ipSecurityRestrictions: empty(allowedCaller) ? [] : [
        callerRule
      ]
      scmIpSecurityRestrictionsUseMain: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: [
          {
            name: 'durable'
            instanceCount: alwaysReadyDurableInstances
          }
        ]
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

}

// checkov reads every sites/config resource as the web config (siteConfig); this one holds app settings
// only, so its web-config checks do not apply. The site's own siteConfig above is what they are about.
resource appSettingsConfig 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  // checkov:skip=CKV_AZURE_13: Not a web config (app settings only); callers authenticate with function keys.
  // checkov:skip=CKV_AZURE_222: Not a web config (app settings only); public access is decided on the site (see its skip).
  // checkov:skip=CKV_AZURE_80: Not a web config (app settings only); the app is Python, not .NET.
  // checkov:skip=CKV_AZURE_88: Not a web config (app settings only); Flex Consumption runs from a blob package, not Azure Files.
  name: 'appsettings'
  // checkov:skip=CKV_AZURE_63: Not a web config (app settings only); Functions logs requests to Application Insights.
  // checkov:skip=CKV_AZURE_65: Not a web config (app settings only); errors go to Application Insights, never to callers.
  // checkov:skip=CKV_AZURE_66: Not a web config (app settings only); failed requests are traced in Application Insights.
  properties: union(storageSettings, taskHubStorageSettings, hostSettings, appSettings)
}

// Deployments authenticate with Entra ID; basic (user/password) publishing is off.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output resourceId string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
