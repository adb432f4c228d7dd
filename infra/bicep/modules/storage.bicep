// A keyless storage account: Entra ID only (shared keys off), TLS 1.2, HTTPS, no anonymous blob access,
// soft delete, and the containers, queues and tables named in storage/names.py. The lifecycle policy is
// the safety net behind the app's own retention timer.

@description('Required. Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resource.')
param tags object = {}

@description('Optional. Replication. ZRS survives a zone outage; use LRS only where the region has no zones.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_ZRS'

@description('Optional. Blob containers to create.')
param containers array = []

@description('Optional. Queues to create.')
param queues array = []

@description('Optional. Tables to create.')
param tables array = []

@description('Optional. Days a deleted blob or container can be restored (soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteRetentionDays int = 7

@description('Optional. Origins (scheme://host) whose browsers may PUT uploads to the valet-key SAS URLs: the gateway that serves the dashboard (/api/ui). Empty: no CORS rule, browsers cannot upload directly.')
param blobCorsOrigins array = []

@description('Optional. Lifecycle rules, each { name, prefixes: ["container/path/", ...], deleteAfterDays }: blobs under the prefixes are deleted that many days after their last change. Empty: no policy. Use the app\'s own retention plus a margin, so the app purges first and the policy is the safety net.')
param lifecycleRules array = []

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // checkov:skip=CKV_AZURE_206: Zone-redundant (ZRS) by default; geo replication is one parameter away (skuName). Job data lives for days, and a job can be resubmitted.
    name: skuName
  }
  // checkov:skip=CKV_AZURE_35: The default deployment has no virtual network (Flex Consumption without VNet integration and developers' laptops reach it over the internet); every request still needs an Entra ID token because shared keys are off. Add private endpoints and set defaultAction Deny when the app joins a VNet.
  // checkov:skip=CKV_AZURE_59: Same reason as CKV_AZURE_35: public network access stays on, shared-key and anonymous access are off.
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }

}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    cors: {
      corsRules: empty(blobCorsOrigins) ? [] : [
        {
          allowedOrigins: blobCorsOrigins
          allowedMethods: [
            'PUT'
          ]
          allowedHeaders: [
            'content-type'
            'x-ms-blob-type'
            'x-ms-version'
            'x-ms-client-request-id'
          ]
          exposedHeaders: [
            'etag'
          ]
          maxAgeInSeconds: 600
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (!empty(lifecycleRules)) {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [for rule in lifecycleRules: {
        name: rule.name
        enabled: true
        type: 'Lifecycle'
        definition: {
          filters: {
            blobTypes: [
              'blockBlob'
              'appendBlob'
            ]
            prefixMatch: rule.prefixes
          }
          actions: {
            baseBlob: {
              delete: {
                daysAfterModificationGreaterThan: rule.deleteAfterDays
              }
            }
          }
        }
      }]
    }
  }
}

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in containers: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

resource storageQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in queues: {
  parent: queueService
  name: queue
}]

resource storageTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in tables: {
  parent: tableService
  name: table
}]

output name string = storage.name
output resourceId string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
