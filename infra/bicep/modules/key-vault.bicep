// The Key Vault that holds the function key API Management sends to the app, and the secret that signs
// webhook deliveries (read by the app through a Key Vault reference). Provisioning never writes
// the key: the azd postdeploy hook (infra/hooks/postdeploy.sh) reads a host key from the deployed app and
// stores it here. Until then the secret holds a placeholder that says so, so API Management's named value (a
// Key Vault reference, checked when it is created) resolves on the very first deployment.

@description('Required. Key Vault name (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resources.')
param tags object = {}

@description('Required. Name of the secret that holds the function key.')
param functionKeySecretName string

@description('Optional. True once the postdeploy hook has stored the real key (azd sets FUNCTION_KEY_IN_KEY_VAULT): provisioning then leaves the secret alone instead of resetting it to the placeholder.')
param functionKeyStored bool = false

@secure()
@description('Required. Value of the secret until the hook writes the real key: a note for whoever reads the vault, never a valid key of the app.')
param placeholderValue string

@description('Required. Name of the secret that signs webhook deliveries (Standard Webhooks, whsec_<base64>).')
param webhookSecretName string

@description('Optional. True once the postdeploy hook has generated the webhook secret (azd sets WEBHOOK_SECRET_IN_KEY_VAULT): provisioning then leaves it alone instead of resetting it to the placeholder.')
param webhookSecretStored bool = false

@secure()
@description('Required. Value of the webhook secret until the hook generates it: a note, never a whsec_ secret (the app refuses to sign with it).')
param webhookPlaceholderValue string

@description('Required. Principal id of the function app\'s identity: it reads the webhook secret through a Key Vault reference (Key Vault Secrets User).')
param appPrincipalId string

@description('Required. Principal id of the gateway\'s identity: it reads the secret (Key Vault Secrets User).')
param readerPrincipalId string

@description('Optional. Object id of the person or pipeline that runs the postdeploy hook: it writes the secret (Key Vault Secrets Officer). Empty: none (grant it yourself, see docs/deploy.md).')
param writerPrincipalId string = ''

@description('Optional. Principal type of writerPrincipalId.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param writerPrincipalType string = 'User'

var secretsUserRole = '4633458b-17de-408a-b874-0445c86b69e6'
var secretsOfficerRole = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  // checkov:skip=CKV_AZURE_109: The postdeploy hook writes the secret from the deploying machine and API Management reads it from addresses that are not fixed on every tier (Consumption has none), so the firewall stays open; every call still needs an Entra token with a data-plane role.
  // checkov:skip=CKV_AZURE_189: Public network access stays on for the reason given for CKV_AZURE_109.
  // checkov:skip=CKV_AZURE_42: Soft delete is on (7 days); purge protection is off for the reason given for CKV_AZURE_110.
  // checkov:skip=CKV_AZURE_110: No purge protection, so `azd down --purge` frees the name for the next `azd up`; the only secret is a function key the hook writes again from the app.
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource placeholder 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!functionKeyStored) {
  parent: vault
  name: functionKeySecretName
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the body of a conditional (`= if`) resource.
  // checkov:skip=CKV_AZURE_41: A function key does not expire on its own; rotate it with the hook (docs/deploy.md).
  properties: {
    value: placeholderValue
    contentType: 'text/plain'
  }
}

resource webhookPlaceholder 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!webhookSecretStored) {
  parent: vault
  name: webhookSecretName
  // checkov:skip=CKV_AZURE_114: contentType is set below; checkov does not read the body of a conditional (`= if`) resource.
  // checkov:skip=CKV_AZURE_41: The signing secret does not expire on its own; rotate it with the hook (docs/operations.md).
  properties: {
    value: webhookPlaceholderValue
    contentType: 'text/plain'
  }
}

resource readerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, readerPrincipalId, secretsUserRole)
  properties: {
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUserRole)
    description: 'Key Vault Secrets User for the longrun gateway'
  }
}

resource writerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(writerPrincipalId)) {
  scope: vault
  name: guid(vault.id, writerPrincipalId, secretsOfficerRole)
  properties: {
    principalId: writerPrincipalId
    principalType: writerPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsOfficerRole)
    description: 'Key Vault Secrets Officer for the longrun postdeploy hook'
  }
}

// The app reads the webhook secret and nothing else in the vault (not the gateway's function key).
resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: webhookSecretName
}

resource appReaderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: webhookSecret
  name: guid(vault.id, webhookSecretName, appPrincipalId, secretsUserRole)
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUserRole)
    description: 'Key Vault Secrets User on the webhook signing secret for the longrun function app'
  }
  dependsOn: [
    webhookPlaceholder
  ]
}

output name string = vault.name
output resourceId string = vault.id
// Versionless: API Management follows the newest version the hook writes.
output functionKeyUri string = '${vault.properties.vaultUri}secrets/${functionKeySecretName}'
// Versionless: the app's Key Vault reference follows the newest version the hook writes.
output webhookSecretUri string = '${vault.properties.vaultUri}secrets/${webhookSecretName}'
