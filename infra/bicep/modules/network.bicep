// The virtual network of the Application Gateway. Its subnet has the Microsoft.Web service endpoint, so
// the function app's access restrictions can name it: the app then answers only the gateway.

@description('Required. Virtual network name.')
param name string

@description('Required. Azure region.')
param location string

@description('Optional. Tags for the resource.')
param tags object = {}

@description('Optional. Address space of the virtual network; the gateway\'s subnet takes all of it.')
param addressPrefix string = '10.42.0.0/24'

resource virtualNetwork 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'snet-appgateway'
        properties: {
          addressPrefix: addressPrefix
          serviceEndpoints: [
            {
              service: 'Microsoft.Web'
            }
          ]
        }
      }
    ]
  }
}

output name string = virtualNetwork.name
output gatewaySubnetResourceId string = virtualNetwork.properties.subnets[0].id
