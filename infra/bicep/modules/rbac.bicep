// Data-plane roles for one principal, in one loop, each assignment named with guid() so a redeploy
// finds the same assignment instead of failing on a duplicate. Scoped to the resource group, which holds
// only this app's resources (both storage accounts when the task hub has its own, and Application Insights).

@description('Required. Object (principal) id that receives the roles.')
param principalId string

@description('Optional. Kind of principal: the app\'s managed identity is a ServicePrincipal, a developer is a User.')
@allowed([
  'ServicePrincipal'
  'User'
  'Group'
])
param principalType string = 'ServicePrincipal'

// Built-in role definition ids (the same in every tenant).
var roles = {
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  'Storage Table Data Contributor': '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource roleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in items(roles): {
  name: guid(resourceGroup().id, principalId, role.value)
  properties: {
    principalId: principalId
    principalType: principalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.value)
    description: '${role.key} for longrun'
  }
}]

output roleNames array = [for role in items(roles): role.key]
