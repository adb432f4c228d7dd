// Alerts wired to one action group: poison intake messages, dead-lettered jobs, the job failure rate and
// function errors (log queries over the structured events of shared/telemetry.py, no text parsing), plus
// the storage account's queue backlog. Per-queue depth is not a storage metric (QueueMessageCount is
// account-wide and hourly); the app's health endpoint reports each queue.

@description('Required. Action group name.')
param actionGroupName string

@description('Required. Prefix of the alert rule names.')
param namePrefix string

@description('Required. Azure region (scheduled query rules are regional; action groups and metric alerts are global).')
param location string

@description('Optional. Tags for the resources.')
param tags object = {}

@description('Required. E-mail address that receives the alerts.')
param alertEmail string

@description('Required. Resource id of Application Insights, the scope of the log alerts.')
param applicationInsightsResourceId string

@description('Required. Resource id of the app\'s storage account, the scope of the queue backlog alert.')
param storageAccountResourceId string

@description('Optional. Alert when more than this percent of the jobs finished in the window failed.')
@minValue(1)
@maxValue(100)
param jobFailureRatePercent int = 10

@description('Optional. Jobs that must finish in the window before the failure rate alert fires (avoids one failure out of one job paging someone).')
@minValue(1)
param jobFailureRateMinimumJobs int = 5

@description('Optional. Failed function invocations in the window that fire the function error alert.')
@minValue(1)
param functionErrorThreshold int = 5

@description('Optional. Messages across all queues of the storage account (inbox, poison, dead letters and the Durable task hub\'s) that fire the backlog alert.')
@minValue(1)
param queueBacklogThreshold int = 1000

@description('Optional. How far back each log alert looks (ISO 8601 duration).')
param windowSize string = 'PT15M'

@description('Optional. How often the log alerts run (ISO 8601 duration).')
param evaluationFrequency string = 'PT5M'

// The app's events are OpenTelemetry log records: customDimensions.event names the event and the other
// custom dimensions are its fields (shared/telemetry.py); operation_Id is the job's trace id.
var poisonQuery = 'traces | where tostring(customDimensions.event) in ("intake.poison", "intake.poison_unread") | project timestamp, message_id = tostring(customDimensions.message_id), unread = toint(customDimensions.messages)'

var deadLetterQuery = 'traces | where tostring(customDimensions.event) == "job.deadlettered" | project timestamp, job_id = tostring(customDimensions.job_id), [\'kind\'] = tostring(customDimensions.kind), error_type = tostring(customDimensions.error_type), trace_id = operation_Id'

var failureRateQuery = 'traces | extend event = tostring(customDimensions.event) | where event in ("job.completed", "job.failed") | summarize finished = sum(itemCount), failed = sumif(itemCount, event == "job.failed") | where finished >= ${jobFailureRateMinimumJobs} | extend failure_rate_percent = 100.0 * failed / finished | where failure_rate_percent > ${jobFailureRatePercent}'

var functionErrorQuery = 'requests | where success == false | project timestamp, operation_Name, resultCode'

var logAlerts = [
  {
    name: 'poison-queue'
    displayName: 'longrun: intake messages moved to jobs-inbox-poison'
    description: 'A queued submit failed maxDequeueCount times and is now in jobs-inbox-poison. It is also recorded as a dead letter: inspect GET /api/dead-letters and replay it. "unread": messages there no trigger can read (not base64): see docs/operations.md.'
    severity: 2
    query: poisonQuery
    threshold: 0
  }
  {
    name: 'dead-letters'
    displayName: 'longrun: jobs dead-lettered'
    description: 'A job failed for good (retries exhausted or a non-retryable error). See GET /api/dead-letters; fix the cause and POST /api/dead-letters/{id}/replay.'
    severity: 2
    query: deadLetterQuery
    threshold: 0
  }
  {
    name: 'job-failure-rate'
    displayName: 'longrun: job failure rate above ${jobFailureRatePercent}%'
    description: 'More than ${jobFailureRatePercent}% of the jobs that finished in the window failed (at least ${jobFailureRateMinimumJobs} finished).'
    severity: 1
    query: failureRateQuery
    threshold: 0
  }
  {
    name: 'function-errors'
    displayName: 'longrun: function invocations failing'
    description: 'Function invocations (HTTP, queue, timer, orchestrator or activity) ended with an unhandled error.'
    severity: 2
    query: functionErrorQuery
    threshold: functionErrorThreshold - 1
  }
]

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'longrun'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource logAlertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in logAlerts: {
  name: '${namePrefix}${alert.name}'
  location: location
  tags: tags
  properties: {
    displayName: alert.displayName
    description: alert.description
    severity: alert.severity
    enabled: true
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
    scopes: [
      applicationInsightsResourceId
    ]
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: alert.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

resource queueBacklogAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}queue-backlog'
  location: 'global'
  tags: tags
  properties: {
    description: 'More than ${queueBacklogThreshold} messages wait in the storage account\'s queues. Storage emits QueueMessageCount hourly, so this is a coarse backstop behind the log alerts.'
    severity: 3
    enabled: true
    scopes: [
      '${storageAccountResourceId}/queueServices/default'
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT6H'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'queue-message-count'
          metricNamespace: 'Microsoft.Storage/storageAccounts/queueServices'
          metricName: 'QueueMessageCount'
          operator: 'GreaterThan'
          threshold: queueBacklogThreshold
          timeAggregation: 'Average'
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupResourceId string = actionGroup.id
output alertNames array = [for alert in logAlerts: '${namePrefix}${alert.name}']
