// A shared Azure Monitor workbook over the app's traces: jobs over time, duration percentiles, queue
// depth, poison and dead letters, the slowest and the failing jobs. The queries live in workbook.json.

@description('Required. Display name of the workbook in the portal.')
param displayName string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resource.')
param tags object = {}

@description('Required. Resource id of Application Insights, the source of the workbook\'s log queries.')
param applicationInsightsResourceId string

@description('Required. Resource id of the app\'s storage account, the source of the queue depth chart.')
param storageAccountResourceId string

var serializedData = replace(replace(loadTextContent('workbook.json'), '__STORAGE_ACCOUNT_ID__', storageAccountResourceId), '__APPLICATION_INSIGHTS_ID__', applicationInsightsResourceId)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, applicationInsightsResourceId, 'longrun-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: applicationInsightsResourceId
    serializedData: serializedData
  }
}

output resourceId string = workbook.id
